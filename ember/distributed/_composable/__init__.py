"""``torch.distributed._composable``: PyTorch's older path of the composable APIs (FSDP2's
``fully_shard``), kept for the libraries that still import it from here."""
