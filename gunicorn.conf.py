"""gunicorn's settings shared by every way the web tier starts (gunicorn reads
./gunicorn.conf.py by itself: make run, the image, the benchmark)."""

# A friends-board read names up to 100 user ids of up to 64 characters in its query
# (about 6.5 KB); gunicorn's default request line (4094 bytes) would refuse it before
# Django could answer. 8190 is gunicorn's own ceiling.
limit_request_line = 8190
