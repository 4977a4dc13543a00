#!/bin/sh
# Fetches the photographs the quality and speed benches use and converts them to Y4M.
# They are not kept in git: scikit-image's wheel (PyPI) ships public-domain test photographs.
#   usage: common/codec/benches/fetch-images.sh [DIR]
# DIR defaults to $KEYMASH_CODEC_IMAGES if set, else target/codec-data in this checkout: the
# benches read the same place (set KEYMASH_CODEC_IMAGES=DIR for them if you pass another DIR).
# Needs: pip (download only, nothing is installed), unzip, ffmpeg.
set -eu
repo=$(cd "$(dirname "$0")/../../.." && pwd)
dir=${1:-${KEYMASH_CODEC_IMAGES:-$repo/target/codec-data}}
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "fetch-images.sh: $1 is needed (Debian: apt-get install python3-pip unzip ffmpeg)" >&2
        exit 1
    fi
}
need unzip
need ffmpeg
mkdir -p "$dir/wheel"
if ! ls "$dir"/wheel/scikit_image-*.whl >/dev/null 2>&1; then
    need pip
    pip download --no-deps --only-binary=:all: --dest "$dir/wheel" scikit-image
fi
wheel=$(ls "$dir"/wheel/scikit_image-*.whl | head -n 1)
unzip -o -q -j "$wheel" 'skimage/data/astronaut.png' 'skimage/data/coffee.png' \
    'skimage/data/chelsea.png' 'skimage/data/camera.png' -d "$dir/png"
for name in astronaut coffee chelsea camera; do
    for size in 640x480 1280x720; do
        ffmpeg -loglevel error -y -i "$dir/png/$name.png" \
            -vf "scale=${size%x*}:${size#*x}:flags=lanczos,format=yuv420p" \
            -frames:v 1 "$dir/${name}_${size}.y4m"
    done
done
# Camera-like moving content with sensor noise, the fourth image set.
for size in 640x480 1280x720; do
    ffmpeg -loglevel error -y -f lavfi -i "testsrc2=size=$size:rate=30,noise=alls=12:allf=t" \
        -frames:v 1 -pix_fmt yuv420p "$dir/testsrc2noise_${size}.y4m"
done
ls -l "$dir"/*.y4m
