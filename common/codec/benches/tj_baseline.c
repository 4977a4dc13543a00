/* Baseline for the codec benches: libjpeg-turbo (system libturbojpeg, TurboJPEG 2.x API)
 * compressing from and decompressing to planar 4:2:0 YUV, the same work keymash's codec does.
 * Built and run by the benches (cc -O2 tj_baseline.c -lturbojpeg); not part of keymash.
 *
 *   tj_baseline WIDTH HEIGHT ITERATIONS IN.yuv OUT_PREFIX QUALITY...
 *
 * For each quality: compresses ITERATIONS times and decompresses ITERATIONS times (default
 * accurate integer DCT, no Huffman optimisation, as libjpeg's defaults), writes the decoded
 * planes to OUT_PREFIX.QUALITY.yuv and prints one line:
 *   q=Q bytes=B comp_ns=p50,p99,max decomp_ns=p50,p99,max
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <turbojpeg.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void percentiles(long long *t, int n, long long out[3]) {
    qsort(t, (size_t)n, sizeof *t, cmp_ll);
    out[0] = t[n / 2];
    out[1] = t[(int)((long long)n * 99 / 100 < n ? (long long)n * 99 / 100 : n - 1)];
    out[2] = t[n - 1];
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s WIDTH HEIGHT ITERATIONS IN.yuv OUT_PREFIX QUALITY...\n", argv[0]);
        return 2;
    }
    int width = atoi(argv[1]), height = atoi(argv[2]), iterations = atoi(argv[3]);
    if (width <= 0 || height <= 0 || iterations <= 0 || width % 16 || height % 16) {
        fprintf(stderr, "bad size or iteration count\n");
        return 2;
    }
    size_t luma = (size_t)width * height, chroma = luma / 4, total = luma + 2 * chroma;
    unsigned char *yuv = malloc(total), *out = malloc(total);
    FILE *f = fopen(argv[4], "rb");
    if (!yuv || !out || !f || fread(yuv, 1, total, f) != total) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", total, argv[4]);
        return 1;
    }
    fclose(f);
    const unsigned char *src[3] = {yuv, yuv + luma, yuv + luma + chroma};
    unsigned char *dst[3] = {out, out + luma, out + luma + chroma};
    int strides[3] = {width, width / 2, width / 2};
    unsigned long cap = tjBufSize(width, height, TJSAMP_420);
    unsigned char *jpeg = tjAlloc((int)cap);
    long long *times = malloc(sizeof(long long) * (size_t)iterations);
    tjhandle comp = tjInitCompress(), decomp = tjInitDecompress();
    if (!jpeg || !times || !comp || !decomp) {
        fprintf(stderr, "turbojpeg init failed\n");
        return 1;
    }
    for (int a = 6; a < argc; a++) {
        int quality = atoi(argv[a]);
        unsigned long size = 0;
        long long c[3], d[3];
        for (int i = 0; i < iterations; i++) {
            size = cap;
            long long t0 = now_ns();
            if (tjCompressFromYUVPlanes(comp, src, width, strides, height, TJSAMP_420, &jpeg, &size,
                                        quality, TJFLAG_NOREALLOC) != 0) {
                fprintf(stderr, "compress: %s\n", tjGetErrorStr2(comp));
                return 1;
            }
            times[i] = now_ns() - t0;
        }
        percentiles(times, iterations, c);
        for (int i = 0; i < iterations; i++) {
            long long t0 = now_ns();
            if (tjDecompressToYUVPlanes(decomp, jpeg, size, dst, width, strides, height, 0) != 0) {
                fprintf(stderr, "decompress: %s\n", tjGetErrorStr2(decomp));
                return 1;
            }
            times[i] = now_ns() - t0;
        }
        percentiles(times, iterations, d);
        char path[4096];
        snprintf(path, sizeof path, "%s.%d.yuv", argv[5], quality);
        FILE *o = fopen(path, "wb");
        if (!o || fwrite(out, 1, total, o) != total || fclose(o) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        printf("q=%d bytes=%lu comp_ns=%lld,%lld,%lld decomp_ns=%lld,%lld,%lld\n", quality, size, c[0],
               c[1], c[2], d[0], d[1], d[2]);
    }
    tjDestroy(comp);
    tjDestroy(decomp);
    tjFree(jpeg);
    free(times);
    free(yuv);
    free(out);
    return 0;
}
