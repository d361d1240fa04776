"""imgsvc: a CSV of products and image URLs in, compressed images and a results CSV out."""
