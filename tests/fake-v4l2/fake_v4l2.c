/*
 * fake_v4l2.c: a UVC-like webcam in userspace, for tests on machines without a camera, `vivid` or
 * `v4l2loopback`. Loaded with LD_PRELOAD into the process under test, it makes ONE device path
 * behave like a V4L2 capture device with memory-mapped streaming; every other path and file
 * descriptor passes through untouched.
 *
 * Built by the tests (tests/src/fake_v4l2.rs):
 *     gcc -shared -fPIC -O2 -Wall -Wextra -o libfake_v4l2.so fake_v4l2.c -ldl
 *
 * What it intercepts (dlsym(RTLD_NEXT, ...) for the real ones):
 *   open, open64, __open_2, __open64_2, openat, openat64, __openat_2, __openat64_2: the fake path
 *     gives a real file descriptor (a memfd that also holds the driver buffers, so mmap and munmap
 *     of buffers are the kernel's own), or ENOENT while the device is unplugged. A path that is a
 *     symbolic link (a chain of up to 8, relative or absolute, the last one may dangle) to the
 *     fake path counts as the fake path, resolved afresh at every open, as the kernel follows a
 *     udev symlink such as /dev/v4l/by-id/usb-...-video-index0.
 *   ioctl, and syscall(SYS_ioctl, ...): the `v4l` crate (feature `v4l2`, the default) issues its
 *     ioctls through libc::syscall(SYS_ioctl, ...), not ioctl(3), so both are answered.
 *   mmap, mmap64: checks the offset and length against the buffers (EINVAL), ENODEV when unplugged.
 *   poll, ppoll: a fake descriptor is readable (POLLIN | POLLRDNORM) when streaming, a buffer is
 *     queued and a frame is due at the configured rate; POLLERR when not streaming or nothing is
 *     queued (as vb2 does); POLLERR | POLLHUP | POLLPRI once unplugged (as v4l2-dev does).
 *   close: forgets the descriptor and its buffers.
 *
 * ioctls answered (anything else on the fake descriptor: ENOTTY, logged as `unhandled`):
 *   VIDIOC_QUERYCAP, ENUM_FMT, ENUM_FRAMESIZES (discrete), ENUM_FRAMEINTERVALS (discrete),
 *   G_FMT, S_FMT, TRY_FMT, G_PARM, S_PARM, REQBUFS (MMAP only), QUERYBUF, QBUF, DQBUF,
 *   STREAMON, STREAMOFF, QUERYCTRL and QUERY_EXT_CTRL (with V4L2_CTRL_FLAG_NEXT_CTRL and
 *   NEXT_COMPOUND enumeration), QUERYMENU, G_CTRL, S_CTRL, G_EXT_CTRLS, S_EXT_CTRLS,
 *   TRY_EXT_CTRLS, ENUMINPUT, G_INPUT, S_INPUT.
 *   Once unplugged, every ioctl on a descriptor opened before the unplug fails with ENODEV, for
 *   good (as a real node's would after a USB disconnect); a new open after the replug works.
 *
 * Configuration (environment, read once when the library loads):
 *   KEYMASH_FAKE_V4L2_PATH        the device path (default /dev/video-keymash-fake). It need not
 *                                 exist: open() of exactly this string is answered here.
 *   KEYMASH_FAKE_V4L2_SIZE        WIDTHxHEIGHT of the frames (default 320x240).
 *   KEYMASH_FAKE_V4L2_EXTRA_SIZE  one more YUYV size offered (e.g. 160x120), served by
 *                                 nearest-neighbour scaling of the source; unset: none.
 *   KEYMASH_FAKE_V4L2_FPS         frame rates offered, comma separated, the first is the default
 *                                 (default 30). Frames are paced at the rate set with S_PARM.
 *   KEYMASH_FAKE_V4L2_YUYV_FILE   raw packed YUYV frames (2*W*H bytes each, no header), served
 *                                 in a loop. Offering YUYV needs it.
 *   KEYMASH_FAKE_V4L2_MJPEG_DIR   a directory of JPEG files (any names ending .jpg/.jpeg, served
 *                                 in name order, in a loop), each W x H. Offering MJPEG needs it.
 *   KEYMASH_FAKE_V4L2_FORMATS     what is offered and in which order: `yuyv`, `mjpeg`,
 *                                 `yuyv,mjpeg` or `mjpeg,yuyv` (default: each format that has a
 *                                 source, MJPEG first as UVC cameras list it).
 *   KEYMASH_FAKE_V4L2_BYTESPERLINE  YUYV line stride in bytes (default 2*W, packed). Larger pads
 *                                 every line with garbage (alternating 0x00 0xff), so a reader that
 *                                 ignores the stride shows a sheared, striped picture.
 *   KEYMASH_FAKE_V4L2_CORRUPT_EVERY N: every Nth MJPEG frame delivered (sequence % N == N-1) is
 *                                 corrupt (default 0: never).
 *   KEYMASH_FAKE_V4L2_CORRUPT_MODE  `truncate` (default: bytesused is cut to a third, the end of
 *                                 the entropy-coded data and the EOI marker are missing) or
 *                                 `garble` (the middle third of the data after SOS is overwritten
 *                                 with pseudo-random bytes; a lenient decoder may not notice).
 *   KEYMASH_FAKE_V4L2_CONTROLS    which controls exist: `all` (default), `none`, or a comma list of
 *                                 names, each optionally `name=MIN:MAX:STEP:DEFAULT`. Names (kernel
 *                                 names in brackets, IDs as in videodev2.h):
 *                                   brightness              integer -64..64 step 1 default 0 (Brightness)
 *                                   white_balance_automatic boolean default 1 (White Balance, Automatic)
 *                                   power_line_frequency    menu 0 Disabled, 1 50 Hz, 2 60 Hz, default 1
 *                                                           (Power Line Frequency)
 *                                   auto_exposure           menu 1 Manual Mode, 3 Aperture Priority Mode
 *                                                           (0 and 2 skipped: QUERYMENU gives EINVAL, as
 *                                                           UVC does), default 3 (Auto Exposure)
 *                                   exposure_time_absolute  integer 3..2047 step 1 default 250, flagged
 *                                                           INACTIVE unless auto_exposure is 1
 *                                                           (Exposure Time, Absolute)
 *                                 The class controls "User Controls" and "Camera Controls" are
 *                                 listed too, as UVC lists them. Setting a value: integers are clamped
 *                                 to the range and rounded to the step, booleans are 0/1, a menu
 *                                 value out of range gives ERANGE and a skipped item EINVAL (the
 *                                 kernel's rules). Values start at the defaults at every open: a
 *                                 replugged camera forgets what was set.
 *   KEYMASH_FAKE_V4L2_CONTROL_FILE  unplug and replug: when this file's first word is `gone`, the
 *                                 device is unplugged (open gives ENOENT; poll gives POLLERR|POLLHUP;
 *                                 ioctl and mmap on descriptors opened earlier give ENODEV). Any other
 *                                 content, or no file, means present. `present PATH` (a second word)
 *                                 also moves the device to PATH, as a replugged UVC camera may come
 *                                 back as /dev/video2 instead of /dev/video0: from then on PATH (or a
 *                                 symlink to it) is the fake device and the old path is an ordinary
 *                                 path again (nothing there: ENOENT). Read at every open (of any
 *                                 path), poll and ioctl on the fake device (at most every
 *                                 millisecond).
 *   KEYMASH_FAKE_V4L2_LOG         a file where one line per event is appended:
 *                                 `<CLOCK_MONOTONIC ns> <event> <details>`, events:
 *                                   open fd=N | open-refused gone | close fd=N
 *                                   s_fmt YUYV|MJPG WxH bytesperline=N sizeimage=N
 *                                   s_parm N/D | reqbufs N | streamon | streamoff
 *                                   dqbuf seq=N buf=N src=N bytes=N [corrupt]
 *                                   ctrl 0xID name value        (every control set, by S_CTRL or
 *                                                                S_EXT_CTRLS, after clamping)
 *                                   unplugged | replugged       (as this process noticed)
 *                                   moved PATH                  (`present PATH` with a new PATH)
 *                                   enodev <what>               (a call refused as unplugged)
 *                                   unhandled 0xREQUEST         (an ioctl this fake does not answer)
 *                                   error <message>             (bad configuration or source)
 *                                   served frames=N cpu_ns=N    (every 30 frames delivered and at
 *                                                                STREAMOFF: frames delivered and the
 *                                                                CPU time (CLOCK_THREAD_CPUTIME_ID)
 *                                                                this library spent answering ioctl
 *                                                                and poll on fake descriptors since it
 *                                                                loaded, so a benchmark can subtract
 *                                                                the fake's own work from the
 *                                                                process's)
 *
 * Timing: STREAMON starts the clock; frame n (sequence n, from 0) is due at start + (n+1) *
 * interval. A reader that falls behind gets the newest frames its queued buffers can hold, with
 * a gap in the sequence numbers, as a driver drops frames when no buffer is queued. Timestamps are
 * CLOCK_MONOTONIC (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC), the time the frame was due.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 16
#define MAX_BUFFERS 16
#define MAX_RATES 8
#define MAX_FORMATS 2
#define MAX_CONTROLS 8

/* ---- real functions ---------------------------------------------------------------------- */

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_open_2)(const char *, int);
static int (*real_open64_2)(const char *, int);
static int (*real_openat_2)(int, const char *, int);
static int (*real_openat64_2)(int, const char *, int);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static long (*real_syscall)(long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ---- configuration ----------------------------------------------------------------------- */

struct size {
	uint32_t width, height;
};

struct frames {
	/* One entry per source frame: bytes and length. */
	unsigned char **data;
	size_t *len;
	size_t count;
	size_t max_len;
};

enum control_kind { CTRL_CLASS_HEADER, CTRL_INT, CTRL_BOOL, CTRL_MENU };

struct control {
	uint32_t id;
	const char *key;  /* v4l2-ctl style: lower case, underscores */
	const char *name; /* the kernel's */
	enum control_kind kind;
	int32_t min, max, step, def;
	const char *menu[4];
	uint32_t skip_mask; /* menu items that do not exist */
	int enabled;
};

static struct {
	char path[4096];
	struct size size;
	struct size extra; /* width 0: none */
	uint32_t rates[MAX_RATES];
	int rate_count;
	uint32_t formats[MAX_FORMATS];
	int format_count;
	uint32_t bytesperline; /* YUYV at the main size */
	unsigned corrupt_every;
	int corrupt_garble;
	char control_file[4096];
	int log_fd;
	struct frames yuyv, mjpeg;
	struct control controls[MAX_CONTROLS];
	int control_count;
	/* unplug state as last seen */
	int gone;
	uint64_t gone_checked_ns;
	/* the fake's own work, for benchmarks: see `served` in the header comment */
	uint64_t served_frames;
	uint64_t own_cpu_ns;
	pthread_mutex_t lock;
} cfg = {.log_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static const struct control control_table[] = {
    {V4L2_CID_USER_CLASS, "user_controls", "User Controls", CTRL_CLASS_HEADER, 0, 0, 0, 0, {0}, 0, 1},
    {V4L2_CID_BRIGHTNESS, "brightness", "Brightness", CTRL_INT, -64, 64, 1, 0, {0}, 0, 1},
    {V4L2_CID_AUTO_WHITE_BALANCE, "white_balance_automatic", "White Balance, Automatic", CTRL_BOOL,
     0, 1, 1, 1, {0}, 0, 1},
    {V4L2_CID_POWER_LINE_FREQUENCY, "power_line_frequency", "Power Line Frequency", CTRL_MENU, 0, 2,
     1, 1, {"Disabled", "50 Hz", "60 Hz", 0}, 0, 1},
    {V4L2_CID_CAMERA_CLASS, "camera_controls", "Camera Controls", CTRL_CLASS_HEADER, 0, 0, 0, 0, {0},
     0, 1},
    {V4L2_CID_EXPOSURE_AUTO, "auto_exposure", "Auto Exposure", CTRL_MENU, 0, 3, 1, 3,
     {"Auto Mode", "Manual Mode", "Shutter Priority Mode", "Aperture Priority Mode"}, 0x5, 1},
    {V4L2_CID_EXPOSURE_ABSOLUTE, "exposure_time_absolute", "Exposure Time, Absolute", CTRL_INT, 3,
     2047, 1, 250, {0}, 0, 1},
};

/* ---- per descriptor state ---------------------------------------------------------------- */

struct buffer {
	int queued;
	uint32_t bytesused;
	uint32_t sequence;
	struct timeval timestamp;
	uint32_t flags;
};

struct fake_fd {
	int fd; /* -1: free */
	int dead; /* opened before an unplug */
	uint32_t fourcc;
	struct size size;
	uint32_t bytesperline, sizeimage;
	uint32_t rate; /* frames per second */
	int32_t values[MAX_CONTROLS];
	/* buffers */
	unsigned char *memory; /* our own mapping of the memfd */
	size_t buffer_stride;  /* page-aligned distance between buffers */
	uint32_t buffer_count;
	struct buffer buffers[MAX_BUFFERS];
	uint32_t queue[MAX_BUFFERS]; /* FIFO of queued buffer indices */
	uint32_t queue_len;
	int streaming;
	uint64_t start_ns;
	uint64_t next_seq; /* the next sequence number that may be delivered */
};

static struct fake_fd fds[MAX_FDS];

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void log_event(const char *format, ...)
{
	if (cfg.log_fd < 0)
		return;
	char line[512];
	int n = snprintf(line, sizeof line, "%llu ", (unsigned long long)now_ns());
	va_list ap;
	va_start(ap, format);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, format, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	/* O_APPEND and one write per line: lines from threads and processes do not interleave. */
	ssize_t ignored = write(cfg.log_fd, line, (size_t)n);
	(void)ignored;
}

static const char *fourcc_name(uint32_t fourcc)
{
	return fourcc == V4L2_PIX_FMT_YUYV ? "YUYV" : fourcc == V4L2_PIX_FMT_MJPEG ? "MJPG" : "????";
}

static int parse_size(const char *text, struct size *out)
{
	unsigned w, h;
	if (!text || sscanf(text, "%ux%u", &w, &h) != 2 || w == 0 || h == 0 || w % 2)
		return -1;
	out->width = w;
	out->height = h;
	return 0;
}

static int read_whole_file(const char *path, unsigned char **data, size_t *len)
{
	int fd = real_open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		real_close(fd);
		return -1;
	}
	unsigned char *buf = malloc((size_t)st.st_size);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	real_close(fd);
	if (!buf || got != (size_t)st.st_size) {
		free(buf);
		return -1;
	}
	*data = buf;
	*len = got;
	return 0;
}

static void frames_push(struct frames *f, unsigned char *data, size_t len)
{
	f->data = realloc(f->data, (f->count + 1) * sizeof *f->data);
	f->len = realloc(f->len, (f->count + 1) * sizeof *f->len);
	f->data[f->count] = data;
	f->len[f->count] = len;
	f->count++;
	if (len > f->max_len)
		f->max_len = len;
}

static void load_yuyv(const char *path)
{
	unsigned char *all;
	size_t len;
	size_t frame = (size_t)cfg.size.width * cfg.size.height * 2;
	if (read_whole_file(path, &all, &len) < 0 || len < frame) {
		log_event("error cannot read YUYV frames of %ux%u from %s", cfg.size.width,
			  cfg.size.height, path);
		return;
	}
	for (size_t off = 0; off + frame <= len; off += frame)
		frames_push(&cfg.yuyv, all + off, frame);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_mjpeg(const char *dir_path)
{
	DIR *dir = opendir(dir_path);
	if (!dir) {
		log_event("error cannot open JPEG directory %s", dir_path);
		return;
	}
	char **names = NULL;
	size_t count = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		size_t n = strlen(e->d_name);
		if ((n > 4 && !strcasecmp(e->d_name + n - 4, ".jpg")) ||
		    (n > 5 && !strcasecmp(e->d_name + n - 5, ".jpeg"))) {
			names = realloc(names, (count + 1) * sizeof *names);
			names[count++] = strdup(e->d_name);
		}
	}
	closedir(dir);
	qsort(names, count, sizeof *names, name_cmp);
	for (size_t i = 0; i < count; i++) {
		char path[8192];
		snprintf(path, sizeof path, "%s/%s", dir_path, names[i]);
		unsigned char *data;
		size_t len;
		if (read_whole_file(path, &data, &len) == 0)
			frames_push(&cfg.mjpeg, data, len);
		else
			log_event("error cannot read %s", path);
		free(names[i]);
	}
	free(names);
	if (!cfg.mjpeg.count)
		log_event("error no JPEG files in %s", dir_path);
}

static void configure_controls(const char *spec)
{
	int all = !spec || !*spec || !strcmp(spec, "all");
	int none = spec && !strcmp(spec, "none");
	cfg.control_count = 0;
	for (size_t i = 0; i < sizeof control_table / sizeof control_table[0]; i++) {
		struct control c = control_table[i];
		c.enabled = all;
		if (!all && !none && c.kind != CTRL_CLASS_HEADER) {
			/* find "key" or "key=..." as a comma separated item */
			size_t klen = strlen(c.key);
			for (const char *p = spec; p && *p;) {
				const char *end = strchr(p, ',');
				size_t ilen = end ? (size_t)(end - p) : strlen(p);
				if (ilen >= klen && !strncmp(p, c.key, klen) &&
				    (ilen == klen || p[klen] == '=')) {
					c.enabled = 1;
					int mn, mx, st, df;
					if (ilen > klen &&
					    sscanf(p + klen + 1, "%d:%d:%d:%d", &mn, &mx, &st, &df) == 4 &&
					    mn <= df && df <= mx && st > 0) {
						c.min = mn;
						c.max = mx;
						c.step = st;
						c.def = df;
					}
				}
				p = end ? end + 1 : NULL;
			}
		}
		cfg.controls[cfg.control_count++] = c;
	}
	/* A class header is listed only when a control of its class is. */
	for (int i = 0; i < cfg.control_count; i++) {
		struct control *h = &cfg.controls[i];
		if (h->kind != CTRL_CLASS_HEADER)
			continue;
		h->enabled = 0;
		for (int j = 0; j < cfg.control_count; j++)
			if (cfg.controls[j].kind != CTRL_CLASS_HEADER && cfg.controls[j].enabled &&
			    V4L2_CTRL_ID2CLASS(cfg.controls[j].id) == V4L2_CTRL_ID2CLASS(h->id))
				h->enabled = 1;
	}
}

static void resolve_real(void)
{
	real_open = dlsym(RTLD_NEXT, "open");
	real_open64 = dlsym(RTLD_NEXT, "open64");
	real_openat = dlsym(RTLD_NEXT, "openat");
	real_openat64 = dlsym(RTLD_NEXT, "openat64");
	real_open_2 = dlsym(RTLD_NEXT, "__open_2");
	real_open64_2 = dlsym(RTLD_NEXT, "__open64_2");
	real_openat_2 = dlsym(RTLD_NEXT, "__openat_2");
	real_openat64_2 = dlsym(RTLD_NEXT, "__openat64_2");
	real_close = dlsym(RTLD_NEXT, "close");
	real_ioctl = dlsym(RTLD_NEXT, "ioctl");
	real_syscall = dlsym(RTLD_NEXT, "syscall");
	real_mmap = dlsym(RTLD_NEXT, "mmap");
	real_mmap64 = dlsym(RTLD_NEXT, "mmap64");
	real_poll = dlsym(RTLD_NEXT, "poll");
	real_ppoll = dlsym(RTLD_NEXT, "ppoll");
}

static void init(void)
{
	resolve_real();
	for (int i = 0; i < MAX_FDS; i++)
		fds[i].fd = -1;
	const char *v;
	v = getenv("KEYMASH_FAKE_V4L2_LOG");
	if (v && *v)
		cfg.log_fd = real_open(v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	v = getenv("KEYMASH_FAKE_V4L2_PATH");
	snprintf(cfg.path, sizeof cfg.path, "%s", v && *v ? v : "/dev/video-keymash-fake");
	if (parse_size(getenv("KEYMASH_FAKE_V4L2_SIZE"), &cfg.size) < 0)
		cfg.size = (struct size){320, 240};
	if (parse_size(getenv("KEYMASH_FAKE_V4L2_EXTRA_SIZE"), &cfg.extra) < 0)
		cfg.extra = (struct size){0, 0};
	v = getenv("KEYMASH_FAKE_V4L2_FPS");
	for (const char *p = v; p && *p && cfg.rate_count < MAX_RATES;) {
		unsigned r = (unsigned)strtoul(p, NULL, 10);
		if (r > 0 && r <= 1000)
			cfg.rates[cfg.rate_count++] = r;
		p = strchr(p, ',');
		p = p ? p + 1 : NULL;
	}
	if (!cfg.rate_count)
		cfg.rates[cfg.rate_count++] = 30;
	cfg.bytesperline = cfg.size.width * 2;
	v = getenv("KEYMASH_FAKE_V4L2_BYTESPERLINE");
	if (v && *v) {
		uint32_t b = (uint32_t)strtoul(v, NULL, 10);
		if (b >= cfg.size.width * 2)
			cfg.bytesperline = b;
		else
			log_event("error KEYMASH_FAKE_V4L2_BYTESPERLINE=%s is below 2*width", v);
	}
	v = getenv("KEYMASH_FAKE_V4L2_CORRUPT_EVERY");
	cfg.corrupt_every = v ? (unsigned)strtoul(v, NULL, 10) : 0;
	v = getenv("KEYMASH_FAKE_V4L2_CORRUPT_MODE");
	cfg.corrupt_garble = v && !strcmp(v, "garble");
	v = getenv("KEYMASH_FAKE_V4L2_CONTROL_FILE");
	snprintf(cfg.control_file, sizeof cfg.control_file, "%s", v ? v : "");
	configure_controls(getenv("KEYMASH_FAKE_V4L2_CONTROLS"));
	v = getenv("KEYMASH_FAKE_V4L2_YUYV_FILE");
	if (v && *v)
		load_yuyv(v);
	v = getenv("KEYMASH_FAKE_V4L2_MJPEG_DIR");
	if (v && *v)
		load_mjpeg(v);
	v = getenv("KEYMASH_FAKE_V4L2_FORMATS");
	if (v && *v) {
		for (const char *p = v; *p && cfg.format_count < MAX_FORMATS;) {
			if (!strncmp(p, "yuyv", 4) && cfg.yuyv.count)
				cfg.formats[cfg.format_count++] = V4L2_PIX_FMT_YUYV;
			else if (!strncmp(p, "mjpeg", 5) && cfg.mjpeg.count)
				cfg.formats[cfg.format_count++] = V4L2_PIX_FMT_MJPEG;
			else
				log_event("error format at '%s' is unknown or has no source", p);
			p = strchr(p, ',');
			if (!p)
				break;
			p++;
		}
	} else {
		if (cfg.mjpeg.count)
			cfg.formats[cfg.format_count++] = V4L2_PIX_FMT_MJPEG;
		if (cfg.yuyv.count)
			cfg.formats[cfg.format_count++] = V4L2_PIX_FMT_YUYV;
	}
	if (!cfg.format_count)
		log_event("error no format offered: set KEYMASH_FAKE_V4L2_YUYV_FILE or _MJPEG_DIR");
}

static void ensure_init(void)
{
	pthread_once(&init_once, init);
}

__attribute__((constructor)) static void fake_v4l2_load(void)
{
	ensure_init();
}

/* Whether the device is unplugged now, per the control file; marks every open descriptor dead
 * on the transition to gone. Caller holds the lock. */
static int device_gone(void)
{
	if (!cfg.control_file[0])
		return 0;
	uint64_t now = now_ns();
	if (cfg.gone_checked_ns && now - cfg.gone_checked_ns < 1000000)
		return cfg.gone;
	cfg.gone_checked_ns = now;
	char text[4200] = {0};
	int fd = real_open(cfg.control_file, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, text, sizeof text - 1);
		(void)r;
		real_close(fd);
	}
	int gone = !strncmp(text, "gone", 4);
	char moved_to[4096];
	if (!gone && sscanf(text, "%*s %4095s", moved_to) == 1 && strcmp(moved_to, cfg.path)) {
		snprintf(cfg.path, sizeof cfg.path, "%s", moved_to);
		log_event("moved %s", cfg.path);
	}
	if (gone && !cfg.gone) {
		log_event("unplugged");
		for (int i = 0; i < MAX_FDS; i++)
			if (fds[i].fd >= 0)
				fds[i].dead = 1;
	} else if (!gone && cfg.gone) {
		log_event("replugged");
	}
	cfg.gone = gone;
	return gone;
}

static struct fake_fd *find_fd(int fd)
{
	if (fd < 0)
		return NULL;
	for (int i = 0; i < MAX_FDS; i++)
		if (fds[i].fd == fd)
			return &fds[i];
	return NULL;
}

static int has_fake_fds(void)
{
	for (int i = 0; i < MAX_FDS; i++)
		if (fds[i].fd >= 0)
			return 1;
	return 0;
}

/* ---- formats ----------------------------------------------------------------------------- */

static int format_offered(uint32_t fourcc)
{
	for (int i = 0; i < cfg.format_count; i++)
		if (cfg.formats[i] == fourcc)
			return 1;
	return 0;
}

/* The sizes offered for a format: the main size, and the extra one for YUYV. */
static int sizes_of(uint32_t fourcc, struct size out[2])
{
	if (!format_offered(fourcc))
		return 0;
	int n = 0;
	out[n++] = cfg.size;
	if (fourcc == V4L2_PIX_FMT_YUYV && cfg.extra.width)
		out[n++] = cfg.extra;
	return n;
}

static uint32_t stride_for(uint32_t fourcc, struct size s)
{
	if (fourcc != V4L2_PIX_FMT_YUYV)
		return 0;
	return s.width * 2 + (cfg.bytesperline - cfg.size.width * 2);
}

static uint32_t sizeimage_for(uint32_t fourcc, struct size s)
{
	if (fourcc == V4L2_PIX_FMT_YUYV)
		return stride_for(fourcc, s) * s.height;
	/* MJPEG: the largest source file or a generous bound, whichever is larger. */
	uint32_t bound = s.width * s.height * 2;
	return cfg.mjpeg.max_len > bound ? (uint32_t)cfg.mjpeg.max_len : bound;
}

/* Fills pix as the driver would for the request (closest offered size; the first format if
 * the asked one is not offered). */
static void adjust_format(struct v4l2_pix_format *pix)
{
	uint32_t fourcc = format_offered(pix->pixelformat) ? pix->pixelformat : cfg.formats[0];
	struct size sizes[2];
	int n = sizes_of(fourcc, sizes);
	struct size best = sizes[0];
	uint64_t best_d = UINT64_MAX;
	for (int i = 0; i < n; i++) {
		int64_t dw = (int64_t)sizes[i].width - pix->width;
		int64_t dh = (int64_t)sizes[i].height - pix->height;
		uint64_t d = (uint64_t)(dw * dw + dh * dh);
		if (d < best_d) {
			best_d = d;
			best = sizes[i];
		}
	}
	memset(pix, 0, sizeof *pix);
	pix->width = best.width;
	pix->height = best.height;
	pix->pixelformat = fourcc;
	pix->field = V4L2_FIELD_NONE;
	pix->bytesperline = stride_for(fourcc, best);
	pix->sizeimage = sizeimage_for(fourcc, best);
	pix->colorspace = V4L2_COLORSPACE_SRGB;
}

static void set_default_format(struct fake_fd *f)
{
	struct v4l2_pix_format pix = {.pixelformat = cfg.formats[0],
				      .width = cfg.size.width,
				      .height = cfg.size.height};
	adjust_format(&pix);
	f->fourcc = pix.pixelformat;
	f->size = (struct size){pix.width, pix.height};
	f->bytesperline = pix.bytesperline;
	f->sizeimage = pix.sizeimage;
	f->rate = cfg.rates[0];
}

/* ---- frames ------------------------------------------------------------------------------ */

static uint32_t fill_yuyv(struct fake_fd *f, unsigned char *dst, uint64_t seq, size_t *src_index)
{
	size_t index = (size_t)(seq % cfg.yuyv.count);
	*src_index = index;
	const unsigned char *src = cfg.yuyv.data[index];
	uint32_t sw = cfg.size.width, sh = cfg.size.height;
	uint32_t w = f->size.width, h = f->size.height;
	for (uint32_t y = 0; y < h; y++) {
		unsigned char *row = dst + (size_t)y * f->bytesperline;
		if (w == sw && h == sh) {
			memcpy(row, src + (size_t)y * sw * 2, (size_t)w * 2);
		} else {
			/* nearest neighbour, in pairs of pixels (one Y0 U Y1 V macropixel) */
			uint32_t sy = (uint32_t)((uint64_t)y * sh / h);
			for (uint32_t x = 0; x < w; x += 2) {
				uint32_t sx = (uint32_t)((uint64_t)x * sw / w) & ~1u;
				memcpy(row + (size_t)x * 2, src + ((size_t)sy * sw + sx) * 2, 4);
			}
		}
		for (uint32_t x = w * 2; x < f->bytesperline; x++)
			row[x] = (x & 1) ? 0xff : 0x00;
	}
	return f->bytesperline * h;
}

static uint32_t fill_mjpeg(struct fake_fd *f, unsigned char *dst, uint64_t seq, size_t *src_index,
			   int *corrupt)
{
	size_t index = (size_t)(seq % cfg.mjpeg.count);
	*src_index = index;
	size_t len = cfg.mjpeg.len[index];
	if (len > f->sizeimage)
		len = f->sizeimage;
	memcpy(dst, cfg.mjpeg.data[index], len);
	*corrupt = cfg.corrupt_every && seq % cfg.corrupt_every == cfg.corrupt_every - 1;
	if (!*corrupt)
		return (uint32_t)len;
	if (!cfg.corrupt_garble)
		return (uint32_t)(len / 3);
	/* Find the start of scan (FF DA) and garble the middle third of what follows. */
	size_t sos = 2;
	for (size_t i = 2; i + 1 < len; i++)
		if (dst[i] == 0xff && dst[i + 1] == 0xda) {
			sos = i + 2;
			break;
		}
	size_t span = len - sos;
	uint32_t x = (uint32_t)seq * 2654435761u + 1;
	for (size_t i = sos + span / 3; i < sos + 2 * span / 3 && i + 2 < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		dst[i] = (unsigned char)x;
	}
	return (uint32_t)len;
}

static uint64_t interval_ns(const struct fake_fd *f)
{
	return 1000000000ull / (f->rate ? f->rate : 30);
}

/* The highest sequence number due at `now` (-1: none yet). */
static int64_t due_seq(const struct fake_fd *f, uint64_t now)
{
	if (now < f->start_ns + interval_ns(f))
		return -1;
	return (int64_t)((now - f->start_ns) / interval_ns(f)) - 1;
}

/* Readiness of a fake descriptor for poll. Caller holds the lock. */
static short fake_revents(struct fake_fd *f, short events, uint64_t now, uint64_t *wake_ns)
{
	if (device_gone() || f->dead)
		return POLLERR | POLLHUP | POLLPRI;
	if (!f->streaming || !f->queue_len)
		return POLLERR;
	int64_t due = due_seq(f, now);
	if (due >= 0 && (uint64_t)due >= f->next_seq)
		return events & (POLLIN | POLLRDNORM);
	uint64_t at = f->start_ns + (f->next_seq + 1) * interval_ns(f);
	if (at < *wake_ns)
		*wake_ns = at;
	return 0;
}

/* ---- controls ---------------------------------------------------------------------------- */

static int control_index(uint32_t id)
{
	for (int i = 0; i < cfg.control_count; i++)
		if (cfg.controls[i].enabled && cfg.controls[i].id == id)
			return i;
	return -1;
}

static uint32_t control_flags(const struct fake_fd *f, int i)
{
	const struct control *c = &cfg.controls[i];
	if (c->kind == CTRL_CLASS_HEADER)
		return V4L2_CTRL_FLAG_READ_ONLY | V4L2_CTRL_FLAG_WRITE_ONLY;
	if (c->id == V4L2_CID_EXPOSURE_ABSOLUTE) {
		int ae = control_index(V4L2_CID_EXPOSURE_AUTO);
		if (ae >= 0 && f->values[ae] != V4L2_EXPOSURE_MANUAL)
			return V4L2_CTRL_FLAG_INACTIVE;
	}
	return 0;
}

static uint32_t control_type(const struct control *c)
{
	switch (c->kind) {
	case CTRL_CLASS_HEADER:
		return V4L2_CTRL_TYPE_CTRL_CLASS;
	case CTRL_INT:
		return V4L2_CTRL_TYPE_INTEGER;
	case CTRL_BOOL:
		return V4L2_CTRL_TYPE_BOOLEAN;
	case CTRL_MENU:
		return V4L2_CTRL_TYPE_MENU;
	}
	return 0;
}

/* For QUERYCTRL and QUERY_EXT_CTRL: the control asked for, or with NEXT_CTRL the first one with
 * a higher ID. */
static int query_index(uint32_t id)
{
	uint32_t next = id & (V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND);
	uint32_t bare = id & ~(V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND);
	if (!next)
		return control_index(bare);
	int best = -1;
	for (int i = 0; i < cfg.control_count; i++) {
		const struct control *c = &cfg.controls[i];
		if (c->enabled && c->id > bare && (best < 0 || c->id < cfg.controls[best].id))
			best = i;
	}
	return best;
}

/* Checks a new value as the kernel does; 0 and *value adjusted, or an errno. */
static int validate_control(int i, int32_t *value)
{
	const struct control *c = &cfg.controls[i];
	switch (c->kind) {
	case CTRL_CLASS_HEADER:
		return EACCES;
	case CTRL_BOOL:
		*value = !!*value;
		return 0;
	case CTRL_MENU:
		if (*value < c->min || *value > c->max)
			return ERANGE;
		if (c->skip_mask & (1u << *value))
			return EINVAL;
		return 0;
	case CTRL_INT: {
		int64_t v = *value;
		if (v < c->min)
			v = c->min;
		if (v > c->max)
			v = c->max;
		v = c->min + (v - c->min + c->step / 2) / c->step * c->step;
		if (v > c->max)
			v -= c->step;
		*value = (int32_t)v;
		return 0;
	}
	}
	return EINVAL;
}

static void set_control(struct fake_fd *f, int i, int32_t value, const char *via)
{
	f->values[i] = value;
	log_event("ctrl 0x%08x %s %d via=%s", cfg.controls[i].id, cfg.controls[i].key, value, via);
}

static int ext_ctrls(struct fake_fd *f, unsigned long request, struct v4l2_ext_controls *cs)
{
	if (cs->which != V4L2_CTRL_WHICH_CUR_VAL && cs->which != V4L2_CTRL_WHICH_DEF_VAL) {
		/* `which` is a control class: every control must be of it */
		for (uint32_t k = 0; k < cs->count; k++)
			if (V4L2_CTRL_ID2WHICH(cs->controls[k].id) != cs->which) {
				cs->error_idx = k;
				return EINVAL;
			}
	}
	int32_t values[64];
	if (cs->count > 64)
		return E2BIG;
	for (uint32_t k = 0; k < cs->count; k++) {
		int i = control_index(cs->controls[k].id);
		if (i < 0 || cfg.controls[i].kind == CTRL_CLASS_HEADER) {
			cs->error_idx = request == VIDIOC_G_EXT_CTRLS ? k : cs->count;
			return i < 0 ? EINVAL : EACCES;
		}
		if (request == VIDIOC_G_EXT_CTRLS) {
			cs->controls[k].value = cs->which == V4L2_CTRL_WHICH_DEF_VAL
						    ? cfg.controls[i].def
						    : f->values[i];
			continue;
		}
		values[k] = cs->controls[k].value;
		int err = validate_control(i, &values[k]);
		if (err) {
			cs->error_idx = k;
			return err;
		}
	}
	if (request == VIDIOC_G_EXT_CTRLS)
		return 0;
	if (cs->which == V4L2_CTRL_WHICH_DEF_VAL)
		return EINVAL;
	for (uint32_t k = 0; k < cs->count; k++) {
		cs->controls[k].value = values[k];
		if (request == VIDIOC_S_EXT_CTRLS)
			set_control(f, control_index(cs->controls[k].id), values[k], "S_EXT_CTRLS");
	}
	return 0;
}

/* ---- buffers ----------------------------------------------------------------------------- */

static void free_buffers(struct fake_fd *f)
{
	if (f->memory)
		munmap(f->memory, f->buffer_stride * f->buffer_count);
	f->memory = NULL;
	f->buffer_count = 0;
	f->queue_len = 0;
	if (ftruncate(f->fd, 0) < 0)
		log_event("error ftruncate: %s", strerror(errno));
}

static void describe_buffer(struct fake_fd *f, uint32_t index, struct v4l2_buffer *b)
{
	struct buffer *buf = &f->buffers[index];
	uint32_t type = b->type;
	memset(b, 0, sizeof *b);
	b->index = index;
	b->type = type;
	b->memory = V4L2_MEMORY_MMAP;
	b->m.offset = (uint32_t)(index * f->buffer_stride);
	b->length = f->sizeimage;
	b->bytesused = buf->bytesused;
	b->field = V4L2_FIELD_NONE;
	b->sequence = buf->sequence;
	b->timestamp = buf->timestamp;
	b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC |
		   V4L2_BUF_FLAG_TSTAMP_SRC_SOE | (buf->queued ? V4L2_BUF_FLAG_QUEUED : 0) | buf->flags;
}

/* Takes the oldest queued buffer and fills it with the frame due. Caller checked one is due. */
static int deliver(struct fake_fd *f, struct v4l2_buffer *b, uint64_t now)
{
	int64_t due = due_seq(f, now);
	/* a reader behind by more than its queued buffers: the older frames were dropped */
	uint64_t seq = f->next_seq;
	if ((uint64_t)due >= seq + f->queue_len)
		seq = (uint64_t)due - (f->queue_len - 1);
	uint32_t index = f->queue[0];
	memmove(f->queue, f->queue + 1, (f->queue_len - 1) * sizeof f->queue[0]);
	f->queue_len--;
	struct buffer *buf = &f->buffers[index];
	unsigned char *dst = f->memory + index * f->buffer_stride;
	size_t src_index = 0;
	int corrupt = 0;
	buf->bytesused = f->fourcc == V4L2_PIX_FMT_YUYV ? fill_yuyv(f, dst, seq, &src_index)
							 : fill_mjpeg(f, dst, seq, &src_index, &corrupt);
	buf->queued = 0;
	buf->sequence = (uint32_t)seq;
	uint64_t t = f->start_ns + (seq + 1) * interval_ns(f);
	buf->timestamp.tv_sec = (time_t)(t / 1000000000ull);
	buf->timestamp.tv_usec = (suseconds_t)(t % 1000000000ull / 1000);
	buf->flags = 0;
	f->next_seq = seq + 1;
	describe_buffer(f, index, b);
	log_event("dqbuf seq=%llu buf=%u src=%zu bytes=%u%s", (unsigned long long)seq, index,
		  src_index, buf->bytesused, corrupt ? " corrupt" : "");
	if (++cfg.served_frames % 30 == 0)
		log_event("served frames=%llu cpu_ns=%llu", (unsigned long long)cfg.served_frames,
			  (unsigned long long)cfg.own_cpu_ns);
	return 0;
}

/* ---- ioctl ------------------------------------------------------------------------------- */

static void copy_name(uint8_t *dst, size_t size, const char *src)
{
	memset(dst, 0, size);
	snprintf((char *)dst, size, "%s", src);
}

/* Answers one ioctl on a fake descriptor; 0 or an errno (EAGAIN from DQBUF when no frame is
 * due: fake_ioctl waits for one, with the lock released, if the descriptor is blocking). Caller
 * holds the lock. */
static int fake_ioctl_locked(struct fake_fd *f, unsigned long request, void *arg)
{
	if (device_gone() || f->dead) {
		log_event("enodev ioctl 0x%08lx", request);
		return ENODEV;
	}
	switch (request) {
	case VIDIOC_QUERYCAP: {
		struct v4l2_capability *cap = arg;
		memset(cap, 0, sizeof *cap);
		copy_name(cap->driver, sizeof cap->driver, "uvcvideo");
		copy_name(cap->card, sizeof cap->card, "Keymash Fake Webcam");
		copy_name(cap->bus_info, sizeof cap->bus_info, "usb-0000:00:14.0-9");
		cap->version = (6u << 16) | (1u << 8);
		cap->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING | V4L2_CAP_EXT_PIX_FORMAT;
		cap->capabilities = cap->device_caps | V4L2_CAP_META_CAPTURE | V4L2_CAP_DEVICE_CAPS;
		return 0;
	}
	case VIDIOC_ENUM_FMT: {
		struct v4l2_fmtdesc *d = arg;
		if (d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || d->index >= (uint32_t)cfg.format_count)
			return EINVAL;
		uint32_t index = d->index, type = d->type;
		memset(d, 0, sizeof *d);
		d->index = index;
		d->type = type;
		d->pixelformat = cfg.formats[index];
		if (d->pixelformat == V4L2_PIX_FMT_MJPEG) {
			d->flags = V4L2_FMT_FLAG_COMPRESSED;
			copy_name(d->description, sizeof d->description, "Motion-JPEG");
		} else {
			copy_name(d->description, sizeof d->description, "YUYV 4:2:2");
		}
		return 0;
	}
	case VIDIOC_ENUM_FRAMESIZES: {
		struct v4l2_frmsizeenum *s = arg;
		struct size sizes[2];
		int n = sizes_of(s->pixel_format, sizes);
		if (s->index >= (uint32_t)n)
			return EINVAL;
		s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
		s->discrete.width = sizes[s->index].width;
		s->discrete.height = sizes[s->index].height;
		return 0;
	}
	case VIDIOC_ENUM_FRAMEINTERVALS: {
		struct v4l2_frmivalenum *iv = arg;
		struct size sizes[2];
		int n = sizes_of(iv->pixel_format, sizes), found = 0;
		for (int i = 0; i < n; i++)
			found |= sizes[i].width == iv->width && sizes[i].height == iv->height;
		if (!found || iv->index >= (uint32_t)cfg.rate_count)
			return EINVAL;
		iv->type = V4L2_FRMIVAL_TYPE_DISCRETE;
		iv->discrete.numerator = 1;
		iv->discrete.denominator = cfg.rates[iv->index];
		return 0;
	}
	case VIDIOC_G_FMT:
	case VIDIOC_S_FMT:
	case VIDIOC_TRY_FMT: {
		struct v4l2_format *fmt = arg;
		if (fmt->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
			return EINVAL;
		struct v4l2_pix_format *pix = &fmt->fmt.pix;
		if (request == VIDIOC_G_FMT) {
			pix->pixelformat = f->fourcc;
			pix->width = f->size.width;
			pix->height = f->size.height;
			adjust_format(pix);
			return 0;
		}
		adjust_format(pix);
		if (request == VIDIOC_TRY_FMT)
			return 0;
		if (f->buffer_count)
			return EBUSY;
		f->fourcc = pix->pixelformat;
		f->size = (struct size){pix->width, pix->height};
		f->bytesperline = pix->bytesperline;
		f->sizeimage = pix->sizeimage;
		log_event("s_fmt %s %ux%u bytesperline=%u sizeimage=%u", fourcc_name(f->fourcc),
			  f->size.width, f->size.height, f->bytesperline, f->sizeimage);
		return 0;
	}
	case VIDIOC_G_PARM:
	case VIDIOC_S_PARM: {
		struct v4l2_streamparm *p = arg;
		if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
			return EINVAL;
		if (request == VIDIOC_S_PARM) {
			struct v4l2_fract t = p->parm.capture.timeperframe;
			/* the offered rate closest to the asked one (0/0: the default) */
			double asked = t.numerator ? (double)t.denominator / t.numerator : cfg.rates[0];
			uint32_t best = cfg.rates[0];
			for (int i = 0; i < cfg.rate_count; i++)
				if ((cfg.rates[i] > asked ? cfg.rates[i] - asked : asked - cfg.rates[i]) <
				    (best > asked ? best - asked : asked - best))
					best = cfg.rates[i];
			if (f->streaming)
				return EBUSY;
			f->rate = best;
			log_event("s_parm 1/%u", best);
		}
		memset(&p->parm, 0, sizeof p->parm);
		p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
		p->parm.capture.timeperframe.numerator = 1;
		p->parm.capture.timeperframe.denominator = f->rate;
		return 0;
	}
	case VIDIOC_REQBUFS: {
		struct v4l2_requestbuffers *r = arg;
		if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP)
			return EINVAL;
		if (f->streaming)
			return EBUSY;
		free_buffers(f);
		log_event("reqbufs %u", r->count);
		if (r->count == 0)
			return 0;
		uint32_t count = r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		f->buffer_stride = (f->sizeimage + page - 1) / page * page;
		if (ftruncate(f->fd, (off_t)(f->buffer_stride * count)) < 0)
			return ENOMEM;
		f->memory = real_mmap(NULL, f->buffer_stride * count, PROT_READ | PROT_WRITE, MAP_SHARED,
				      f->fd, 0);
		if (f->memory == MAP_FAILED) {
			f->memory = NULL;
			return ENOMEM;
		}
		f->buffer_count = count;
		memset(f->buffers, 0, sizeof f->buffers);
		r->count = count;
		r->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
		return 0;
	}
	case VIDIOC_QUERYBUF:
	case VIDIOC_QBUF: {
		struct v4l2_buffer *b = arg;
		if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->index >= f->buffer_count ||
		    b->memory != V4L2_MEMORY_MMAP)
			return EINVAL;
		if (request == VIDIOC_QBUF) {
			if (f->buffers[b->index].queued)
				return EINVAL;
			f->buffers[b->index].queued = 1;
			f->queue[f->queue_len++] = b->index;
		}
		describe_buffer(f, b->index, b);
		return 0;
	}
	case VIDIOC_DQBUF: {
		struct v4l2_buffer *b = arg;
		if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP ||
		    !f->streaming)
			return EINVAL;
		uint64_t now = now_ns();
		int64_t due = due_seq(f, now);
		if (!f->queue_len || due < 0 || (uint64_t)due < f->next_seq)
			return EAGAIN; /* the caller waits for a blocking descriptor */
		return deliver(f, b, now);
	}
	case VIDIOC_STREAMON:
	case VIDIOC_STREAMOFF: {
		int *type = arg;
		if (*type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
			return EINVAL;
		if (request == VIDIOC_STREAMON) {
			if (!f->buffer_count)
				return EINVAL;
			if (!f->streaming) {
				f->streaming = 1;
				f->start_ns = now_ns();
				f->next_seq = 0;
				log_event("streamon %s %ux%u 1/%u", fourcc_name(f->fourcc), f->size.width,
					  f->size.height, f->rate);
			}
		} else {
			f->streaming = 0;
			f->queue_len = 0;
			for (uint32_t i = 0; i < f->buffer_count; i++)
				f->buffers[i].queued = 0;
			log_event("streamoff");
			log_event("served frames=%llu cpu_ns=%llu", (unsigned long long)cfg.served_frames,
				  (unsigned long long)cfg.own_cpu_ns);
		}
		return 0;
	}
	case VIDIOC_QUERYCTRL: {
		struct v4l2_queryctrl *q = arg;
		int i = query_index(q->id);
		if (i < 0)
			return EINVAL;
		const struct control *c = &cfg.controls[i];
		memset(q, 0, sizeof *q);
		q->id = c->id;
		q->type = control_type(c);
		copy_name(q->name, sizeof q->name, c->name);
		q->minimum = c->min;
		q->maximum = c->max;
		q->step = c->step;
		q->default_value = c->def;
		q->flags = control_flags(f, i);
		return 0;
	}
	case VIDIOC_QUERY_EXT_CTRL: {
		struct v4l2_query_ext_ctrl *q = arg;
		int i = query_index(q->id);
		if (i < 0)
			return EINVAL;
		const struct control *c = &cfg.controls[i];
		memset(q, 0, sizeof *q);
		q->id = c->id;
		q->type = control_type(c);
		snprintf(q->name, sizeof q->name, "%s", c->name);
		q->minimum = c->min;
		q->maximum = c->max;
		q->step = (uint64_t)c->step;
		q->default_value = c->def;
		q->flags = control_flags(f, i);
		q->elem_size = c->kind == CTRL_CLASS_HEADER ? 0 : 4;
		q->elems = 1;
		q->nr_of_dims = 0;
		return 0;
	}
	case VIDIOC_QUERYMENU: {
		struct v4l2_querymenu *m = arg;
		int i = control_index(m->id);
		if (i < 0 || cfg.controls[i].kind != CTRL_MENU)
			return EINVAL;
		const struct control *c = &cfg.controls[i];
		if ((int64_t)m->index < c->min || (int64_t)m->index > c->max ||
		    (c->skip_mask & (1u << m->index)) || !c->menu[m->index])
			return EINVAL;
		uint32_t id = m->id, index = m->index;
		memset(m, 0, sizeof *m);
		m->id = id;
		m->index = index;
		copy_name(m->name, sizeof m->name, c->menu[index]);
		return 0;
	}
	case VIDIOC_G_CTRL:
	case VIDIOC_S_CTRL: {
		struct v4l2_control *c = arg;
		int i = control_index(c->id);
		if (i < 0)
			return EINVAL;
		if (cfg.controls[i].kind == CTRL_CLASS_HEADER)
			return EACCES;
		if (request == VIDIOC_G_CTRL) {
			c->value = f->values[i];
			return 0;
		}
		int32_t v = c->value;
		int err = validate_control(i, &v);
		if (err)
			return err;
		c->value = v;
		set_control(f, i, v, "S_CTRL");
		return 0;
	}
	case VIDIOC_G_EXT_CTRLS:
	case VIDIOC_S_EXT_CTRLS:
	case VIDIOC_TRY_EXT_CTRLS:
		return ext_ctrls(f, request, arg);
	case VIDIOC_ENUMINPUT: {
		struct v4l2_input *in = arg;
		if (in->index != 0)
			return EINVAL;
		memset(in, 0, sizeof *in);
		copy_name(in->name, sizeof in->name, "Camera 1");
		in->type = V4L2_INPUT_TYPE_CAMERA;
		return 0;
	}
	case VIDIOC_G_INPUT:
		*(int *)arg = 0;
		return 0;
	case VIDIOC_S_INPUT:
		return *(int *)arg == 0 ? 0 : EINVAL;
	default:
		log_event("unhandled 0x%08lx", request);
		return ENOTTY;
	}
}

/* Adds the thread CPU time since `since` to the fake's own work. */
static void account_own_cpu(uint64_t since)
{
	uint64_t spent = thread_cpu_ns() - since;
	pthread_mutex_lock(&cfg.lock);
	cfg.own_cpu_ns += spent;
	pthread_mutex_unlock(&cfg.lock);
}

static int fake_ioctl_timed(int fd, unsigned long request, void *arg);

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
	uint64_t cpu_start = thread_cpu_ns();
	int r = fake_ioctl_timed(fd, request, arg);
	int saved = errno;
	account_own_cpu(cpu_start);
	errno = saved;
	return r;
}

static int fake_ioctl_timed(int fd, unsigned long request, void *arg)
{
	pthread_mutex_lock(&cfg.lock);
	struct fake_fd *f = find_fd(fd);
	int err = f ? fake_ioctl_locked(f, request, arg) : EBADF;
	int blocking = f && !(fcntl(fd, F_GETFL) & O_NONBLOCK);
	pthread_mutex_unlock(&cfg.lock);
	/* A blocking DQBUF waits for the next frame, checking for an unplug as it goes. */
	while (err == EAGAIN && request == VIDIOC_DQBUF && blocking) {
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&cfg.lock);
		f = find_fd(fd);
		err = f ? fake_ioctl_locked(f, request, arg) : EBADF;
		pthread_mutex_unlock(&cfg.lock);
	}
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static int is_fake(int fd)
{
	pthread_mutex_lock(&cfg.lock);
	int fake = find_fd(fd) != NULL;
	pthread_mutex_unlock(&cfg.lock);
	return fake;
}

int ioctl(int fd, unsigned long request, ...)
{
	ensure_init();
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (is_fake(fd))
		return fake_ioctl(fd, request, arg);
	return real_ioctl(fd, request, arg);
}

long syscall(long number, ...)
{
	ensure_init();
	va_list ap;
	va_start(ap, number);
	long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
	long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_ioctl && is_fake((int)a1))
		return fake_ioctl((int)a1, (unsigned long)a2, (void *)a3);
	return real_syscall(number, a1, a2, a3, a4, a5, a6);
}

/* ---- open and close ---------------------------------------------------------------------- */

/* Follows `path` through symbolic links (up to 8; the last target need not exist) into
 * `out`. */
static void resolve_links(const char *path, char *out, size_t size)
{
	snprintf(out, size, "%s", path);
	for (int hop = 0; hop < 8; hop++) {
		struct stat st;
		if (lstat(out, &st) < 0 || !S_ISLNK(st.st_mode))
			return;
		char target[4096];
		ssize_t n = readlink(out, target, sizeof target - 1);
		if (n < 0)
			return;
		target[n] = 0;
		if (target[0] == '/') {
			snprintf(out, size, "%s", target);
		} else {
			/* relative to the link's directory */
			char *slash = strrchr(out, '/');
			char joined[8192];
			if (slash)
				snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - out), out, target);
			else
				snprintf(joined, sizeof joined, "%s", target);
			size_t len = strnlen(joined, size - 1);
			memcpy(out, joined, len);
			out[len] = 0;
		}
	}
}

/* Whether `path` is the fake device now (it may have moved: see the control file). */
static int is_fake_path(const char *path)
{
	if (!path)
		return 0;
	pthread_mutex_lock(&cfg.lock);
	device_gone(); /* picks up a move */
	int fake = !strcmp(path, cfg.path);
	if (!fake) {
		char resolved[4096];
		resolve_links(path, resolved, sizeof resolved);
		fake = !strcmp(resolved, cfg.path);
	}
	pthread_mutex_unlock(&cfg.lock);
	return fake;
}

static int fake_open(int flags)
{
	pthread_mutex_lock(&cfg.lock);
	cfg.gone_checked_ns = 0; /* always look at an open */
	if (device_gone()) {
		pthread_mutex_unlock(&cfg.lock);
		log_event("open-refused gone");
		errno = ENOENT;
		return -1;
	}
	struct fake_fd *f = NULL;
	for (int i = 0; i < MAX_FDS && !f; i++)
		if (fds[i].fd < 0)
			f = &fds[i];
	if (!f || !cfg.format_count) {
		pthread_mutex_unlock(&cfg.lock);
		errno = f ? ENXIO : EMFILE;
		return -1;
	}
	int fd = memfd_create("fake-v4l2", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0) {
		pthread_mutex_unlock(&cfg.lock);
		return -1;
	}
	if (flags & O_NONBLOCK)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	memset(f, 0, sizeof *f);
	f->fd = fd;
	set_default_format(f);
	for (int i = 0; i < cfg.control_count; i++)
		f->values[i] = cfg.controls[i].def;
	pthread_mutex_unlock(&cfg.lock);
	log_event("open fd=%d", fd);
	return fd;
}

static int open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	ensure_init();
	va_list ap;
	va_start(ap, flags);
	int mode = open_mode(flags, ap);
	va_end(ap);
	return is_fake_path(path) ? fake_open(flags) : real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	ensure_init();
	va_list ap;
	va_start(ap, flags);
	int mode = open_mode(flags, ap);
	va_end(ap);
	return is_fake_path(path) ? fake_open(flags) : real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	ensure_init();
	va_list ap;
	va_start(ap, flags);
	int mode = open_mode(flags, ap);
	va_end(ap);
	return is_fake_path(path) ? fake_open(flags) : real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	ensure_init();
	va_list ap;
	va_start(ap, flags);
	int mode = open_mode(flags, ap);
	va_end(ap);
	return is_fake_path(path) ? fake_open(flags) : real_openat64(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags)
{
	ensure_init();
	return is_fake_path(path) ? fake_open(flags) : real_open_2(path, flags);
}

int __open64_2(const char *path, int flags)
{
	ensure_init();
	return is_fake_path(path) ? fake_open(flags) : real_open64_2(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
	ensure_init();
	return is_fake_path(path) ? fake_open(flags) : real_openat_2(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
	ensure_init();
	return is_fake_path(path) ? fake_open(flags) : real_openat64_2(dirfd, path, flags);
}

int close(int fd)
{
	ensure_init();
	pthread_mutex_lock(&cfg.lock);
	struct fake_fd *f = find_fd(fd);
	if (f) {
		if (f->memory)
			munmap(f->memory, f->buffer_stride * f->buffer_count);
		f->memory = NULL;
		f->fd = -1;
		log_event("close fd=%d", fd);
	}
	pthread_mutex_unlock(&cfg.lock);
	return real_close(fd);
}

/* ---- mmap -------------------------------------------------------------------------------- */

static void *fake_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset,
		       void *(*real)(void *, size_t, int, int, int, off_t))
{
	pthread_mutex_lock(&cfg.lock);
	struct fake_fd *f = find_fd(fd);
	if (f) {
		int err = 0;
		if (device_gone() || f->dead)
			err = ENODEV;
		else if (!f->buffer_count || offset < 0 || (size_t)offset % f->buffer_stride ||
			 (size_t)offset / f->buffer_stride >= f->buffer_count || length > f->buffer_stride ||
			 length == 0 || !(flags & MAP_SHARED))
			err = EINVAL;
		if (err) {
			if (err == ENODEV)
				log_event("enodev mmap");
			pthread_mutex_unlock(&cfg.lock);
			errno = err;
			return MAP_FAILED;
		}
	}
	pthread_mutex_unlock(&cfg.lock);
	return real(addr, length, prot, flags, fd, offset);
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
	ensure_init();
	if (fd < 0)
		return real_mmap(addr, length, prot, flags, fd, offset);
	return fake_mmap(addr, length, prot, flags, fd, offset, real_mmap);
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
	ensure_init();
	if (fd < 0)
		return real_mmap64(addr, length, prot, flags, fd, offset);
	return fake_mmap(addr, length, prot, flags, fd, offset, real_mmap64);
}

/* ---- poll -------------------------------------------------------------------------------- */

/* poll with fake descriptors among `pfds`: the fake ones are answered here, the others by the
 * real ppoll, in slices until something is ready or the timeout (ns, -1: none) passes. */
static int fake_poll(struct pollfd *pfds, nfds_t n, int64_t timeout_ns, const sigset_t *sigmask)
{
	uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout_ns;
	struct pollfd *real_fds = calloc(n ? n : 1, sizeof *real_fds);
	if (!real_fds) {
		errno = ENOMEM;
		return -1;
	}
	for (;;) {
		uint64_t now = now_ns();
		uint64_t wake = deadline;
		int ready = 0;
		nfds_t real_n = 0;
		pthread_mutex_lock(&cfg.lock);
		for (nfds_t i = 0; i < n; i++) {
			struct fake_fd *f = find_fd(pfds[i].fd);
			pfds[i].revents = 0;
			if (f) {
				pfds[i].revents = fake_revents(f, pfds[i].events, now, &wake);
				ready += pfds[i].revents != 0;
			} else {
				real_fds[real_n] = pfds[i];
				real_fds[real_n].fd = pfds[i].fd;
				real_n++;
			}
		}
		pthread_mutex_unlock(&cfg.lock);
		/* Look at the other descriptors without waiting if a fake one is ready already; else wait
		 * until the next frame is due or the deadline, in slices of at most 20 ms so that an
		 * unplug is seen promptly. */
		uint64_t wait_ns = 0;
		if (!ready) {
			now = now_ns();
			if (wake > now)
				wait_ns = wake - now;
			if (wait_ns > 20000000)
				wait_ns = 20000000;
		}
		struct timespec ts = {(time_t)(wait_ns / 1000000000ull), (long)(wait_ns % 1000000000ull)};
		int r = real_ppoll(real_fds, real_n, &ts, sigmask);
		if (r < 0) {
			int e = errno;
			free(real_fds);
			errno = e;
			return -1;
		}
		nfds_t k = 0;
		for (nfds_t i = 0; i < n; i++) {
			if (is_fake(pfds[i].fd))
				continue;
			pfds[i].revents = real_fds[k++].revents;
			ready += pfds[i].revents != 0;
		}
		if (ready || now_ns() >= deadline) {
			free(real_fds);
			return ready;
		}
	}
}

static int any_fake(struct pollfd *pfds, nfds_t n)
{
	pthread_mutex_lock(&cfg.lock);
	int fake = 0;
	if (has_fake_fds())
		for (nfds_t i = 0; i < n && !fake; i++)
			fake = find_fd(pfds[i].fd) != NULL;
	pthread_mutex_unlock(&cfg.lock);
	return fake;
}

int poll(struct pollfd *pfds, nfds_t n, int timeout)
{
	ensure_init();
	if (!any_fake(pfds, n))
		return real_poll(pfds, n, timeout);
	uint64_t cpu_start = thread_cpu_ns();
	int r = fake_poll(pfds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL);
	int saved = errno;
	account_own_cpu(cpu_start);
	errno = saved;
	return r;
}

int ppoll(struct pollfd *pfds, nfds_t n, const struct timespec *timeout, const sigset_t *sigmask)
{
	ensure_init();
	if (!any_fake(pfds, n))
		return real_ppoll(pfds, n, timeout, sigmask);
	int64_t t = timeout ? (int64_t)timeout->tv_sec * 1000000000 + timeout->tv_nsec : -1;
	uint64_t cpu_start = thread_cpu_ns();
	int r = fake_poll(pfds, n, t, sigmask);
	int saved = errno;
	account_own_cpu(cpu_start);
	errno = saved;
	return r;
}
