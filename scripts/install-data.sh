#!/bin/sh
# Installs Debian's Fashion-MNIST IDX files where possible (root + apt).
# Everything in jaxdd works without them; tests that need them are skipped.
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian package dataset-fashion-mnist"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
    >/dev/null 2>&1 || echo "could not install dataset-fashion-mnist; continuing without it"
else
  echo "dataset-fashion-mnist not installed (needs root and apt); continuing without it"
fi
exit 0
