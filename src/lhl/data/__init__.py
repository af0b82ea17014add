"""Data: dataset sources (one file each), sequences and the phase-aware LightningDataModule."""
