"""Miners: select informative tuples under ``no_grad`` (one per file)."""

from lit_metric.miners.base import Miner, MinerInputs
from lit_metric.miners.batch_hard_miner import BatchHardMiner
from lit_metric.miners.pair_margin_miner import PairMarginMiner
from lit_metric.miners.quadruplet_miner import QuadrupletMiner
from lit_metric.miners.triplet_miner import TripletMiner

__all__ = ["BatchHardMiner", "Miner", "MinerInputs", "PairMarginMiner", "QuadrupletMiner", "TripletMiner"]
