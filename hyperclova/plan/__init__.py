"""Layout planning: memory, activation, communication and throughput models, a search over
TP x PP x VPP x DP x ZeRO x micro-batch x recompute, and a meta-device dry run that checks them."""
