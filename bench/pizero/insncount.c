/* Guest instruction counter for qemu-user, used by bench/section_pizero.py.
 *
 * Loaded with `qemu-arm -plugin insncount.so,out=OUTFILE`. Counts every guest
 * instruction executed (all threads), and a helper thread rewrites OUTFILE with the
 * running total every 100 ms (written to OUTFILE.tmp, then renamed, so a reader never
 * sees half a number). The bench reads it at both ends of its idle window.
 *
 * Debian's qemu 7.2 ships no plugins and no qemu-plugin.h, so the few entry points of
 * the TCG plugin API (version 1, docs/devel/tcg-plugins.rst in QEMU) are declared here.
 * Counting uses an execution callback with an atomic add per translation block rather
 * than an inline add, so two guest threads never lose an update.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

EXPORT int qemu_plugin_version = 1;

static uint64_t executed;
static char *outfile;
static char *tmpfile_;

static void write_total(void)
{
    FILE *f = fopen(tmpfile_, "w");
    if (!f) {
        return;
    }
    fprintf(f, "%llu\n", (unsigned long long)__atomic_load_n(&executed, __ATOMIC_RELAXED));
    fclose(f);
    rename(tmpfile_, outfile);
}

static void *writer(void *unused)
{
    struct timespec tick = {0, 100 * 1000 * 1000};
    (void)unused;
    for (;;) {
        write_total();
        nanosleep(&tick, NULL);
    }
    return NULL;
}

static void on_exec(unsigned int vcpu_index, void *n_insns)
{
    (void)vcpu_index;
    __atomic_fetch_add(&executed, (uint64_t)(uintptr_t)n_insns, __ATOMIC_RELAXED);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *unused)
{
    (void)id;
    (void)unused;
    write_total();
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info, int argc, char **argv)
{
    pthread_t thread;
    (void)info;
    if (argc != 1 || strncmp(argv[0], "out=", 4) != 0) {
        fprintf(stderr, "insncount: usage: -plugin insncount.so,out=OUTFILE\n");
        return -1;
    }
    outfile = strdup(argv[0] + 4);
    tmpfile_ = malloc(strlen(outfile) + 5);
    if (!outfile || !tmpfile_) {
        return -1;
    }
    sprintf(tmpfile_, "%s.tmp", outfile);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    if (pthread_create(&thread, NULL, writer, NULL) != 0) {
        return -1;
    }
    pthread_detach(thread);
    return 0;
}
