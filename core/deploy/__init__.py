"""Deployment cost: TFLite and tfmot-compressed variants, their accuracy, size and latency, and
running the stored variants on new images."""
