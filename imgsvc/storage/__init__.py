"""Where output images and results CSVs live."""
