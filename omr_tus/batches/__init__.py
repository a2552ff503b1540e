"""The batch pipeline: a completed upload's pages become sheets, workers read them."""
