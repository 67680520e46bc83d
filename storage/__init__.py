"""Where results are kept: the contents folder's run layout, and the S3 store."""
