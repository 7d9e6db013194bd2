/* ptyrun.c — runs a command on a pseudo-terminal and types a session into
 * it, for the REPL tests (tests/repl/NAME.repl, through tests/run-test.sh).
 *
 *   ptyrun SCRIPT COMMAND [ARGS...]
 *
 * The child runs with its stdin, stdout and stderr on the terminal (forkpty).
 * Each line of SCRIPT is typed after the prompt ("dl> " or "... ") has
 * appeared, the way a person would; lines starting with "#!" are actions:
 *   #!ctrl-c [SECONDS]  wait (default 0), then type Ctrl-C without waiting for
 *                       a prompt first (the line before was not waited for)
 *   #!ctrl-d            type Ctrl-D (end of input)
 *   #!partial TEXT      type TEXT without a newline
 *   #!keys TEXT         type TEXT with C escapes (\n \t \b \e \\ \ooo \xHH);
 *                       when it ends with a newline, wait for the prompt
 *   #!sleep SECONDS     wait
 *   #!sh COMMAND        run COMMAND with sh (between two inputs)
 *   #!restart           end the session (Ctrl-D) and start the command again
 * After the script, Ctrl-D ends the session unless it has ended. Everything
 * the terminal shows is written to stdout as the lines it ends up showing
 * (see print_clean). Exit status: the child's, or
 * 124 when a prompt did not come within the timeout (10 s, $PTYRUN_TIMEOUT).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int master = -1;
static pid_t child;
static char **cmd_argv;
static char *seen;  /* everything read from the terminal */
static size_t nseen, capseen, mark;
static double timeout_s = 10.0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads what is available within ms milliseconds; false at the end. */
static bool pump(int ms)
{
    struct pollfd p = {master, POLLIN, 0};
    int r = poll(&p, 1, ms);
    if (r <= 0)
        return true;
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0)
        return false; /* EIO: the child closed the terminal */
    if (nseen + (size_t)n + 1 > capseen) {
        capseen = (nseen + (size_t)n + 1) * 2;
        seen = realloc(seen, capseen);
        if (!seen)
            exit(99);
    }
    memcpy(seen + nseen, buf, (size_t)n);
    nseen += (size_t)n;
    seen[nseen] = 0;
    return true;
}

/* Line editing switches the terminal out of canonical mode after it shows
 * the prompt; what is typed before that would be echoed twice. */
static void wait_raw(void)
{
    double end = now() + 2.0;
    struct termios tio;
    while (now() < end && tcgetattr(master, &tio) == 0 && (tio.c_lflag & ICANON))
        pump(5);
}

/* Waits until a prompt shows after `mark`; false on timeout or end. */
static bool wait_prompt(void)
{
    double end = now() + timeout_s;
    for (;;) {
        for (size_t i = mark; i + 4 <= nseen; i++) {
            if (memcmp(seen + i, "dl> ", 4) == 0 || memcmp(seen + i, "... ", 4) == 0) {
                /* the prompt must be the last thing shown */
                bool last = true;
                for (size_t k = i + 4; k < nseen; k++)
                    if (seen[k] != ' ')
                        last = false;
                if (last) {
                    mark = nseen;
                    wait_raw();
                    return true;
                }
            }
        }
        if (now() > end)
            return false;
        if (!pump(50))
            return false;
    }
}

static void type_text(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(master, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
    mark = nseen;
}

static void sleep_s(double s)
{
    double end = now() + s;
    while (now() < end)
        pump(20);
}

/* What the terminal shows, as text: a line is rewritten in place after a
 * carriage return (line editing redraws it so), backspace moves left, ESC [ K
 * clears to the end of the line, other escape sequences and bells are
 * dropped, trailing blanks removed. */
static void print_clean(void)
{
    char line[4096];
    size_t len = 0, col = 0;
    for (size_t i = 0; i < nseen; i++) {
        unsigned char c = (unsigned char)seen[i];
        if (c == 27) {
            if (i + 1 < nseen && seen[i + 1] == '[') {
                size_t j = i + 2;
                while (j < nseen && !(seen[j] >= 0x40 && seen[j] <= 0x7e))
                    j++;
                if (j < nseen && seen[j] == 'K')
                    len = col;
                i = j;
            } else {
                i++;
            }
            continue;
        }
        if (c == '\r') {
            col = 0;
        } else if (c == '\n') {
            while (len && line[len - 1] == ' ')
                len--;
            fwrite(line, 1, len, stdout);
            fputc('\n', stdout);
            len = col = 0;
        } else if (c == '\b') {
            if (col)
                col--;
        } else if (c == 7) {
            continue;
        } else if (col < sizeof line) {
            while (len < col)
                line[len++] = ' ';
            line[col++] = (char)c;
            if (col > len)
                len = col;
        }
    }
    while (len && line[len - 1] == ' ')
        len--;
    if (len) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
    }
}

/* The bytes of a #!keys argument. */
static size_t unescape(const char *s, char *out)
{
    size_t k = 0;
    while (*s) {
        if (*s != '\\' || !s[1]) {
            out[k++] = *s++;
            continue;
        }
        s++;
        char c = *s++;
        switch (c) {
        case 'n': out[k++] = '\n'; break;
        case 'r': out[k++] = '\r'; break;
        case 't': out[k++] = '\t'; break;
        case 'b': out[k++] = '\b'; break;
        case 'e': out[k++] = 27; break;
        case 'x': {
            unsigned v = 0;
            for (int i = 0; i < 2 && isxdigit((unsigned char)*s); i++, s++)
                v = v * 16 + (unsigned)(isdigit((unsigned char)*s) ? *s - '0' : (tolower(*s) - 'a' + 10));
            out[k++] = (char)v;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                unsigned v = (unsigned)(c - '0');
                for (int i = 0; i < 2 && *s >= '0' && *s <= '7'; i++, s++)
                    v = v * 8 + (unsigned)(*s - '0');
                out[k++] = (char)v;
            } else {
                out[k++] = c;
            }
        }
    }
    return k;
}

static bool starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* A line after which the prompt is not awaited: the next action comes
 * while the input is still being worked on. */
static bool no_wait_before(const char *next)
{
    return next && (starts(next, "#!ctrl-c") || starts(next, "#!sleep") || starts(next, "#!partial"));
}

/* Runs one session over lines[from..to); returns the exit status (124 on a
 * timeout). */
static int session(char **lines, int from, int to)
{
    struct winsize ws = {.ws_row = 40, .ws_col = 200};
    nseen = mark = 0;
    child = forkpty(&master, NULL, NULL, &ws);
    if (child < 0) {
        perror("forkpty");
        exit(2);
    }
    if (child == 0) {
        execvp(cmd_argv[0], cmd_argv);
        perror(cmd_argv[0]);
        _exit(127);
    }
    int status = 0;
    bool timed_out = false, ended = false;
    if (!wait_prompt()) {
        ended = true;
    }
    for (int i = from; i < to && !ended; i++) {
        const char *cur = lines[i];
        const char *next = i + 1 < to ? lines[i + 1] : NULL;
        if (starts(cur, "#!ctrl-c")) {
            sleep_s(atof(cur + 8));
            type_text("\003", 1);
            if (!no_wait_before(next) && !wait_prompt())
                ended = true;
        } else if (starts(cur, "#!ctrl-d")) {
            type_text("\004", 1);
            if (!no_wait_before(next) && !wait_prompt())
                ended = true;
        } else if (starts(cur, "#!partial ")) {
            type_text(cur + 10, strlen(cur + 10));
            sleep_s(0.2);
        } else if (starts(cur, "#!keys ")) {
            char buf[1024];
            size_t n = unescape(cur + 7, buf);
            type_text(buf, n);
            if (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
                if (!no_wait_before(next) && !wait_prompt())
                    ended = true;
            } else {
                sleep_s(0.2);
            }
        } else if (starts(cur, "#!sleep")) {
            sleep_s(atof(cur + 7));
        } else if (starts(cur, "#!sh ")) {
            if (system(cur + 4) != 0)
                fprintf(stderr, "ptyrun: '%s' failed\n", cur + 4);
        } else {
            type_text(cur, strlen(cur));
            type_text("\n", 1);
            if (!no_wait_before(next) && !wait_prompt())
                ended = true;
        }
    }
    if (!ended)
        type_text("\004", 1);
    double end = now() + timeout_s;
    for (;;) {
        pump(50);
        if (waitpid(child, &status, WNOHANG) == child) {
            /* what is left on the terminal, until it reports its end */
            for (int i = 0; i < 100 && pump(20); i++)
                ;
            break;
        }
        if (now() > end) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            timed_out = true;
            break;
        }
    }
    close(master);
    print_clean();
    fflush(stdout);
    if (timed_out) {
        fprintf(stderr, "ptyrun: timed out waiting for a prompt\n");
        return 124;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ptyrun SCRIPT COMMAND [ARGS...]\n");
        return 2;
    }
    const char *t = getenv("PTYRUN_TIMEOUT");
    if (t && atof(t) > 0)
        timeout_s = atof(t);
    FILE *script = fopen(argv[1], "r");
    if (!script) {
        perror(argv[1]);
        return 2;
    }
    cmd_argv = argv + 2;
    signal(SIGPIPE, SIG_IGN);
    char **lines = NULL;
    int n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, script)) >= 0) {
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            lines = realloc(lines, sizeof *lines * (size_t)cap);
        }
        lines[n++] = strdup(line);
    }
    free(line);
    fclose(script);
    int st = 0, from = 0;
    for (int i = 0; i <= n; i++) {
        if (i == n || strcmp(lines[i], "#!restart") == 0) {
            st = session(lines, from, i);
            if (st == 124)
                break;
            from = i + 1;
        }
    }
    for (int i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    return st;
}
