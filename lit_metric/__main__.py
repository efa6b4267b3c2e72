from lit_metric.cli import main

main()
