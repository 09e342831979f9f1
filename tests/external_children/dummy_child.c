/* A reference external reco in C (no Python at all): the `dummy` landscape over skymap-scanner-reco/1.
 *
 * usage: dummy_child PX PY PZ QTOT VX VY VZ VT N_POSVAR
 *   (PX, PY, PZ) the planted unit vector, QTOT the total charge, (VX, VY, VZ, VT) the vertex: what
 *   skymap_scanner.recos.dummy computes in prepare(); the fits are then the same numbers, bit for bit.
 *
 * One request per line on stdin, one reply per line on stdout; chatter on stderr. The JSON reading is
 * deliberately minimal (it looks keys up by name), enough for what the scanner sends.
 * Build: gcc -O2 -ffp-contract=off -o dummy_child dummy_child.c -lm
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTOCOL "skymap-scanner-reco/1"

static double P[3], QTOT, V[4];
static int N_POSVAR;

/* the text after "key": in s (NULL if absent) */
static const char *after_key(const char *s, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? p + strlen(pat) : NULL;
}

static void reply_error(const char *message) {
    printf("{\"protocol\":\"" PROTOCOL "\",\"type\":\"error\",\"message\":\"%s\"}\n", message);
    fflush(stdout);
}

static void fit(const char *line) {
    const char *p = after_key(line, "id");
    const char *item = after_key(line, "fits");
    if (!p || !item) {
        reply_error("a fit request without id or fits");
        return;
    }
    long id = strtol(p, NULL, 10);
    printf("{\"protocol\":\"" PROTOCOL "\",\"type\":\"result\",\"id\":%ld,\"results\":[", id);
    int n = 0;
    const char *z;
    while ((z = after_key(item, "zenith")) != NULL) {
        double zen = strtod(z, NULL);
        const char *a = after_key(z, "azimuth");
        const char *v = after_key(z, "posvar");
        if (!a || !v) break;
        double azi = strtod(a, NULL);
        long posvar = strtol(v, NULL, 10);
        double s = sin(zen);
        double ux = s * cos(azi), uy = s * sin(azi), uz = cos(zen);
        double c = ux * P[0] + uy * P[1] + uz * P[2];
        if (c < -1.0) c = -1.0;
        if (c > 1.0) c = 1.0;
        double llh = 1000.0 * (1.0 - c) + 0.01 * (double)posvar;
        printf("%s{\"llh\":%.17g,\"E_in\":%.17g,\"E_tot\":%.17g,\"X\":%.17g,\"Y\":%.17g,\"Z\":%.17g,\"T\":%.17g}",
               n ? "," : "", llh, QTOT, QTOT, V[0], V[1], V[2], V[3]);
        n++;
        item = v;
    }
    printf("]}\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: %s PX PY PZ QTOT VX VY VZ VT N_POSVAR\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < 3; i++) P[i] = strtod(argv[1 + i], NULL);
    QTOT = strtod(argv[4], NULL);
    for (int i = 0; i < 4; i++) V[i] = strtod(argv[5 + i], NULL);
    N_POSVAR = atoi(argv[9]);
    fprintf(stderr, "cdummy: started\n");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        if (!strstr(line, "\"protocol\":\"" PROTOCOL "\"")) {
            reply_error("this child speaks " PROTOCOL " only");
            continue;
        }
        const char *t = after_key(line, "type");
        if (!t) {
            reply_error("a request without a type");
        } else if (strncmp(t, "\"hello\"", 7) == 0) {
            printf("{\"protocol\":\"" PROTOCOL "\",\"type\":\"hello\",\"reco\":\"cdummy\",\"n_posvar\":%d,"
                   "\"max_batch\":64,\"options_accepted\":[]}\n", N_POSVAR);
            fflush(stdout);
        } else if (strncmp(t, "\"prepare\"", 9) == 0) {
            fprintf(stderr, "cdummy: event received (%zu bytes)\n", strlen(line));
            printf("{\"protocol\":\"" PROTOCOL "\",\"type\":\"prepared\"}\n");
            fflush(stdout);
        } else if (strncmp(t, "\"fit\"", 5) == 0) {
            fit(line);
        } else if (strncmp(t, "\"bye\"", 5) == 0) {
            break;
        } else {
            reply_error("unknown request type");
        }
    }
    free(line);
    return 0;
}
