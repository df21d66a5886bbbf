/* Writing text into a line: bounded appends, numbers, and strings a workload chose, made
 * exact in JSON (surrogateescape) and harmless on a terminal (escaped); socket addresses and
 * signal names. Every field of every record goes through these. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "format.h"

void sw_putf(struct sw_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->p, o->end - o->p, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > o->end - o->p)
		n = o->end - o->p;
	o->p += n;
}

static const char sw_digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/* Two digits per division: every record carries a dozen numbers (time_ns has 19 digits). */
void sw_put_u64(struct sw_out *o, uint64_t v)
{
	char tmp[24];
	int i = sizeof(tmp);

	while (v >= 100) {
		unsigned d = (unsigned)(v % 100) * 2;

		v /= 100;
		tmp[--i] = sw_digit_pairs[d + 1];
		tmp[--i] = sw_digit_pairs[d];
	}
	if (v >= 10) {
		tmp[--i] = sw_digit_pairs[v * 2 + 1];
		tmp[--i] = sw_digit_pairs[v * 2];
	} else {
		tmp[--i] = (char)('0' + v);
	}
	sw_put(o, tmp + i, sizeof(tmp) - i);
}

void sw_put_i64(struct sw_out *o, int64_t v)
{
	if (v < 0) {
		sw_put(o, "-", 1);
		sw_put_u64(o, (uint64_t)0 - (uint64_t)v);
	} else {
		sw_put_u64(o, v);
	}
}

/* Length of a well-formed UTF-8 sequence at s (n bytes left) and its code point; 0 if the
 * byte at s does not start one. Strict, as Python's decoder: no overlong forms, no
 * surrogates, nothing above U+10FFFF — so every byte we call invalid is one Python's
 * surrogateescape turns into U+DC80..U+DCFF too. */
int sw_utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	uint32_t v;
	int len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0) {
		len = 2;
		v = c & 0x1f;
	} else if (c < 0xf0) {
		len = 3;
		v = c & 0x0f;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else {
		len = 4;
		v = c & 0x07;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	}
	if ((size_t)len > n || s[1] < lo || s[1] > hi)
		return 0;
	v = (v << 6) | (s[1] & 0x3f);
	for (int i = 2; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	*cp = v;
	return len;
}

static const char sw_hex[] = "0123456789abcdef";

/* A JSON string (with quotes) of s[0..n) up to its first NUL. Well-formed UTF-8 is copied;
 * each byte that is not becomes \udcXX (Python's surrogateescape: json.loads(line)[k]
 * .encode("utf-8", "surrogateescape") gives the original bytes back). cut puts "..." where
 * bytes were lost. */
void sw_put_json_str(struct sw_out *o, const char *s, size_t n, int cut)
{
	const unsigned char *u = (const unsigned char *)s;

	sw_put(o, "\"", 1);
	if (cut == SW_CUT_HEAD)
		sw_put(o, "...", 3);
	for (size_t i = 0; i < n && u[i];) {
		unsigned char ch = u[i];
		uint32_t cp;
		int len;
		size_t run = i;

		/* A run of printable ASCII that needs no escape (most of every path): one copy. */
		while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
			run++;
		if (run > i) {
			sw_put(o, (const char *)&u[i], run - i);
			i = run;
			continue;
		}
		len = sw_utf8_len(&u[i], n - i, &cp);
		if (ch == '"' || ch == '\\') {
			char esc[2] = {'\\', (char)ch};
			sw_put(o, esc, 2);
		} else if (ch == '\n') {
			sw_put(o, "\\n", 2);
		} else if (ch == '\t') {
			sw_put(o, "\\t", 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			char esc[6] = {'\\', 'u', '0', '0', sw_hex[ch >> 4], sw_hex[ch & 15]};
			sw_put(o, esc, 6);
		} else if (len) {
			sw_put(o, (const char *)&u[i], len);
			i += len;
			continue;
		} else {
			char esc[6] = {'\\', 'u', 'd', 'c', sw_hex[ch >> 4], sw_hex[ch & 15]};
			sw_put(o, esc, 6);
		}
		i++;
	}
	if (cut == SW_CUT_END)
		sw_put(o, "...", 3);
	sw_put(o, "\"", 1);
}

/* Code points a terminal acts on rather than shows: C1 controls and the bidirectional
 * overrides and isolates (which reorder what follows them on the line). */
int sw_unsafe_cp(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f || cp == 0x061c;
}

/* s[0..n) (up to its first NUL) for a human line, without quotes: C0 controls, DEL,
 * backslash (and '"' when quoted) as \xNN, bytes that are not UTF-8 as \xNN, C1 and
 * bidirectional controls as \uNNNN; everything else as is. A workload cannot move the
 * cursor, recolour or reorder the operator's terminal through any field. */
void sw_put_human_text(struct sw_out *o, const char *s, size_t n, int quoted)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < n && u[i];) {
		uint32_t cp;
		int len = sw_utf8_len(&u[i], n - i, &cp);

		if (!len || cp < 0x20 || cp == 0x7f || cp == '\\' || (quoted && cp == '"')) {
			char esc[4] = {'\\', 'x', sw_hex[u[i] >> 4], sw_hex[u[i] & 15]};
			sw_put(o, esc, 4);
			i++;
		} else if (sw_unsafe_cp(cp)) {
			sw_putf(o, "\\u%04x", (unsigned)cp);
			i += len;
		} else {
			sw_put(o, (const char *)&u[i], len);
			i += len;
		}
	}
}

/* A string for a human line: quoted, escaped (put_human_text), "..." where it was cut. */
void sw_put_human_str(struct sw_out *o, const char *s, size_t n, int cut)
{
	if (sw_opts.strsize && strnlen(s, n) > sw_opts.strsize) { /* -s N */
		n = sw_opts.strsize;
		if (cut == SW_CUT_NONE)
			cut = SW_CUT_END;
	}
	sw_put(o, "\"", 1);
	if (cut == SW_CUT_HEAD)
		sw_put(o, "...", 3);
	sw_put_human_text(o, s, n, 1);
	if (cut == SW_CUT_END)
		sw_put(o, "...", 3);
	sw_put(o, "\"", 1);
}


void sw_put_errno(struct sw_out *o, int64_t ret)
{
	int e = (int)-ret;

	if (e > 0 && e < 4096 && sw_errname[e][0])
		sw_puts(o, sw_errname[e]);
	else
		sw_putf(o, "E%d", e);
}

int sw_is_err(int64_t ret) { return ret < 0 && ret >= -4095; }

/* Render a sockaddr; returns its family name for JSON, NULL if unusable. */
const char *sw_fmt_sockaddr(const uint8_t *a, size_t len, char *dst, size_t cap)
{
	uint16_t family;

	if (len < 2)
		return NULL;
	memcpy(&family, a, 2);
	if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		char ip[INET_ADDRSTRLEN];

		memcpy(&sin, a, sizeof(sin));
		inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
		snprintf(dst, cap, "%s:%u", ip, ntohs(sin.sin_port));
		return "inet";
	}
	if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		char ip[INET6_ADDRSTRLEN];

		memcpy(&sin6, a, sizeof(sin6));
		inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip));
		snprintf(dst, cap, "[%s]:%u", ip, ntohs(sin6.sin6_port));
		return "inet6";
	}
	if (family == AF_UNIX) {
		const char *path = (const char *)a + 2;
		size_t n = len - 2;

		if (n == 0) {
			snprintf(dst, cap, "(unnamed)");
		} else if (path[0] == 0) {
			size_t k = n - 1 < cap - 2 ? n - 1 : cap - 2;

			dst[0] = '@';
			for (size_t i = 0; i < k; i++)
				dst[1 + i] = path[1 + i] ? path[1 + i] : '@';
			dst[1 + k] = 0;
		} else {
			size_t k = strnlen(path, n);

			snprintf(dst, cap, "%.*s", (int)k, path);
		}
		return "unix";
	}
	if (family == AF_NETLINK) {
		snprintf(dst, cap, "netlink");
		return "netlink";
	}
	snprintf(dst, cap, "family %u", family);
	return "other";
}

const char *sw_sig_name(int sig)
{
	static const char *const names[] = {
		"0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS",
		"SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM",
		"SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
		"SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
		"SIGIO", "SIGPWR", "SIGSYS",
	};

	return sig > 0 && sig < 32 ? names[sig] : "SIG?";
}


/* One exec argument as a shell would take it back: bare when it has nothing special,
 * else in double quotes with \" \\ \$ \` \n \t and \xHH for other control bytes. */
void sw_put_shell_word(struct sw_out *o, const char *s, size_t n, int cut)
{
	const unsigned char *u = (const unsigned char *)s;
	int bare;

	if (sw_opts.strsize && n > sw_opts.strsize) { /* -s N */
		n = sw_opts.strsize;
		if (cut == SW_CUT_NONE)
			cut = SW_CUT_END;
	}
	/* Bare when a shell would not quote it: letters, digits, _@%+=:,./- and printable
	 * UTF-8 beyond ASCII (never a control, a C1 or a bidirectional mark). */
	bare = n > 0 && cut != SW_CUT_HEAD;
	for (size_t i = 0; i < n && bare;) {
		uint32_t cp;
		int len = sw_utf8_len(&u[i], n - i, &cp);

		if (len == 1)
			bare = (u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
			       (u[i] >= '0' && u[i] <= '9') ||
			       (u[i] && strchr("_@%+=:,./-", u[i]) != NULL);
		else
			bare = len > 1 && cp >= 0xa0 && !sw_unsafe_cp(cp);
		i += len ? len : 1;
	}
	if (bare) {
		sw_put(o, s, n);
		if (cut == SW_CUT_END)
			sw_put(o, "...", 3);
		return;
	}
	/* As a shell would quote it ("\"", "\\", "\$", "\`", "\n", "\t"), and as every human
	 * field is escaped: other controls and non-UTF-8 bytes \xNN, C1/bidi controls \uNNNN. */
	sw_put(o, "\"", 1);
	if (cut == SW_CUT_HEAD)
		sw_put(o, "...", 3);
	for (size_t i = 0; i < n && u[i];) {
		uint32_t cp;
		int len = sw_utf8_len(&u[i], n - i, &cp);

		if (len == 1 && strchr("\"\\$`", u[i])) {
			char esc[2] = {'\\', (char)u[i]};
			sw_put(o, esc, 2);
		} else if (len == 1 && u[i] == '\n') {
			sw_put(o, "\\n", 2);
		} else if (len == 1 && u[i] == '\t') {
			sw_put(o, "\\t", 2);
		} else if (!len || cp < 0x20 || cp == 0x7f) {
			char esc[4] = {'\\', 'x', sw_hex[u[i] >> 4], sw_hex[u[i] & 15]};
			sw_put(o, esc, 4);
			i++;
			continue;
		} else if (sw_unsafe_cp(cp)) {
			sw_putf(o, "\\u%04x", (unsigned)cp);
		} else {
			sw_put(o, (const char *)&u[i], len);
		}
		i += len ? len : 1;
	}
	if (cut == SW_CUT_END)
		sw_put(o, "...", 3);
	sw_put(o, "\"", 1);
}

/* ---- Secrets in a program's arguments (EXEC argv, every sink: human, JSON, files) ----
 * The rules of syscall_watcher/tls/redact.py's redact_argv, in C because EXEC records are
 * formatted here. An argument becomes (part) "[REDACTED]" when it is:
 *  - the value after a secret-named flag (--api-key VALUE, --token VALUE, --password VALUE);
 *  - a secret-named flag's "=VALUE" (--api-key=VALUE) or an environment-shaped NAME=VALUE whose
 *    NAME says KEY/TOKEN/SECRET/PASSWORD/PASSWD/CREDENTIAL (the name stays);
 *  - a secret header's value (Authorization:, Proxy-Authorization:, X-Api-Key:, Cookie:, ...);
 *  - key-shaped text anywhere in it (sk-..., AKIA/ASIA..., ghp_..., xox?-..., AIza...,
 *    "Bearer TOKEN"), only the key replaced; a key cut by the end of a truncated argv too. */
#define SW_REDACTED "[REDACTED]"

static int sw_ieq_prefix(const char *s, size_t n, const char *p)
{
	size_t k = strlen(p);

	if (n < k)
		return 0;
	for (size_t i = 0; i < k; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != p[i])
			return 0;
	}
	return 1;
}

static int sw_icontains(const char *s, size_t n, const char *p)
{
	size_t k = strlen(p);

	for (size_t i = 0; i + k <= n; i++)
		if (sw_ieq_prefix(s + i, n - i, p))
			return 1;
	return 0;
}

static int sw_secret_name(const char *s, size_t n)
{
	static const char *const words[] = {"key", "token", "secret", "password", "passwd",
					    "credential", "authorization"};

	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
		if (sw_icontains(s, n, words[w]))
			return 1;
	return 0;
}

/* A flag whose value is a secret: --api-key, --token, --password, -p? (no: too common). */
static int sw_secret_flag(const char *s, size_t n)
{
	if (n < 3 || s[0] != '-' || s[1] != '-')
		return 0;
	return sw_secret_name(s + 2, n - 2);
}

static int sw_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int sw_tok_char(char c)
{
	return sw_word_char(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

/* Length of the key-shaped token at s (0: none). ``end_cut``: s + n is a cut of the data, so a
 * shorter start of a key counts. */
static size_t sw_key_at(const char *s, size_t n, int end_cut)
{
	static const struct { const char *prefix; size_t min; int upper; } shapes[] = {
		{"sk-", 6, 0}, {"AKIA", 12, 1}, {"ASIA", 12, 1}, {"ghp_", 20, 0}, {"gho_", 20, 0},
		{"ghu_", 20, 0}, {"ghs_", 20, 0}, {"ghr_", 20, 0}, {"xoxa-", 10, 0},
		{"xoxb-", 10, 0}, {"xoxp-", 10, 0}, {"xoxr-", 10, 0}, {"AIza", 20, 0},
	};

	for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
		size_t pl = strlen(shapes[k].prefix), i;

		if (n < pl || memcmp(s, shapes[k].prefix, pl))
			continue;
		for (i = pl; i < n; i++) {
			char c = s[i];

			if (shapes[k].upper ? !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
					    : !sw_word_char(c))
				break;
		}
		if (i - pl >= shapes[k].min || (end_cut && i == n))
			return i;
	}
	if (sw_ieq_prefix(s, n, "bearer ") || sw_ieq_prefix(s, n, "basic ")) {
		size_t i = sw_ieq_prefix(s, n, "bearer ") ? 7 : 6, j = i;

		while (j < n && sw_tok_char(s[j]))
			j++;
		if (j > i || (end_cut && j == n))
			return j;
	}
	return 0;
}

static void sw_red_put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len + n > cap)
		n = cap - *len;
	memcpy(out + *len, s, n);
	*len += n;
}

size_t sw_redact_arg(const char *prev, size_t pn, const char *s, size_t n, int end_cut,
		     char *out, size_t cap)
{
	static const char *const headers[] = {"authorization:", "proxy-authorization:",
					      "x-api-key:", "api-key:", "cookie:", "set-cookie:",
					      "x-auth-token:", "x-goog-api-key:"};
	size_t len = 0, i, start = 0;
	int changed = 0;

	if (prev && sw_secret_flag(prev, pn) && memchr(prev, '=', pn) == NULL) {
		sw_red_put(out, cap, &len, SW_REDACTED, strlen(SW_REDACTED));
		return len;
	}
	for (size_t h = 0; h < sizeof(headers) / sizeof(headers[0]); h++) {
		if (sw_ieq_prefix(s, n, headers[h])) {
			size_t k = strlen(headers[h]);

			sw_red_put(out, cap, &len, s, k);
			sw_red_put(out, cap, &len, " " SW_REDACTED, strlen(SW_REDACTED) + 1);
			return len;
		}
	}
	/* NAME=VALUE (env-shaped or --flag=VALUE) with a secret-sounding NAME. */
	for (i = 0; i < n && s[i] != '='; i++)
		if (!sw_word_char(s[i]) && !(i < 2 && s[i] == '-'))
			break;
	if (i > 0 && i < n && s[i] == '=' && sw_secret_name(s, i)) {
		sw_red_put(out, cap, &len, s, i + 1);
		sw_red_put(out, cap, &len, SW_REDACTED, strlen(SW_REDACTED));
		return len;
	}
	for (i = 0; i < n;) {
		/* at a word boundary, as the regex's \b: "x-sk-..." starts a key, "xsk-..." not */
		int boundary = i == 0 || !(sw_word_char(s[i - 1]) && s[i - 1] != '-');
		size_t k = boundary ? sw_key_at(s + i, n - i, end_cut) : 0;

		if (k) {
			sw_red_put(out, cap, &len, s + start, i - start);
			if (sw_ieq_prefix(s + i, n - i, "bearer ") ||
			    sw_ieq_prefix(s + i, n - i, "basic ")) {
				sw_red_put(out, cap, &len, s + i,
					   sw_ieq_prefix(s + i, n - i, "bearer ") ? 7 : 6);
			}
			sw_red_put(out, cap, &len, SW_REDACTED, strlen(SW_REDACTED));
			i += k;
			start = i;
			changed = 1;
		} else {
			i++;
		}
	}
	if (!changed)
		return (size_t)-1;
	sw_red_put(out, cap, &len, s + start, n - start);
	return len;
}

void sw_put_arg(struct sw_out *o, const char *prev, size_t pn, const char *s, size_t n,
		int end_cut, void (*put)(struct sw_out *, const char *, size_t, int))
{
	char buf[SW_ARGV_MAX + 64];
	size_t len = n + 64 <= sizeof(buf) ? sw_redact_arg(prev, pn, s, n, end_cut, buf,
							   sizeof(buf)) : (size_t)-1;

	if (len == (size_t)-1)
		put(o, s, n, SW_CUT_NONE);
	else
		put(o, buf, len, SW_CUT_NONE);
}
