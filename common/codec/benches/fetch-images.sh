#!/bin/sh
# Fetches the photographs the quality and speed benches use and converts them to Y4M: one still
# per photograph and size, and 60-frame clips made from them (the speed bench's input).
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
# Clips for the speed bench: what a camera gives, many different frames rather than one still.
# Each photograph is scaled to cover 5/4 of the frame and panned across it (a slow hand-held
# sweep, x and y at different periods), with sensor noise that changes every frame; testsrc2
# moves on its own. 60 frames each (2 s at 30 fps).
clip_frames=60
for size in 640x480 1280x720; do
    w=${size%x*}
    h=${size#*x}
    for name in astronaut coffee chelsea camera; do
        ffmpeg -loglevel error -y -loop 1 -framerate 30 -i "$dir/png/$name.png" \
            -vf "scale=$((w * 5 / 4)):$((h * 5 / 4)):force_original_aspect_ratio=increase:flags=lanczos,crop=$w:$h:x='(iw-ow)/2*(1+sin(2*PI*n/$clip_frames))':y='(ih-oh)/2*(1-cos(2*PI*n/($clip_frames*3/2)))',format=yuv420p,noise=alls=6:allf=t" \
            -frames:v $clip_frames "$dir/${name}_${size}_clip.y4m"
    done
    ffmpeg -loglevel error -y -f lavfi -i "testsrc2=size=$size:rate=30,noise=alls=12:allf=t" \
        -frames:v $clip_frames -pix_fmt yuv420p "$dir/testsrc2noise_${size}_clip.y4m"
    # A dim room: the coffee pan darkened, with the heavy sensor noise of a webcam at high gain.
    ffmpeg -loglevel error -y -loop 1 -framerate 30 -i "$dir/png/coffee.png" \
        -vf "scale=$((w * 5 / 4)):$((h * 5 / 4)):force_original_aspect_ratio=increase:flags=lanczos,crop=$w:$h:x='(iw-ow)/2*(1+sin(2*PI*n/$clip_frames))':y='(ih-oh)/2*(1-cos(2*PI*n/($clip_frames*3/2)))',eq=brightness=-0.15:contrast=0.8,format=yuv420p,noise=alls=20:allf=t" \
        -frames:v $clip_frames "$dir/coffeedim_${size}_clip.y4m"
done
ls -l "$dir"/*.y4m
