"""Dataset import, validation, preprocessing and the leave-one-out split."""
