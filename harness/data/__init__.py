"""Data in: clip datasets, VOC, the toy world, video ingest, AudioSet, audio, images and frames."""
