"""Moving a tracee from one tracer thread to another, as a recorder with a tracer thread per CPU
would: what it costs, and what a stop costs afterwards on the new tracer's CPU and on the old.

    python bench/tracer_handover.py [--runs 5]

A small C program (compiled here with the system gcc) traces a child that installs a seccomp
filter like the recording's (its one untraced instruction lets futex through) and makes 20000
getppid calls. Tracer thread A, pinned to one CPU, serves its first 5000 seccomp stops; then the
child is parked in a futex wait at that instruction and detached, and thread B, pinned to the
other CPU, seizes it, interrupts the wait and puts its registers back: the child sees no signal
and no stop of its own, and finishes under B (its sum checked). Run twice, interleaved: with the
child moved to B's CPU, and left on A's. docs/scaling.md says why (a tracer thread per CPU is
the design left to make make -j2 record at 3x native or less).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

PROGRAM = r"""
/* A tracee moved from one tracer thread to another, seeing no signal: at a seccomp stop under
 * thread A its syscall is skipped and it is parked in a futex wait at the one instruction the
 * seccomp filter lets through untraced (as rrverify's syscall page does), detached; thread B
 * seizes it, interrupts the wait, and puts its registers back to issue the syscall again.
 * argv: move the tracee to B's CPU (1) or not (0), A's CPU, B's CPU. Prints the microseconds
 * a stop took under A, under B, and the handover's. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE_AT 0x70000000ul
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void child(void) {
  uint8_t *p = mmap((void *)PAGE_AT, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  memset(p, 0xcc, 4096);
  p[0] = 0x0f; p[1] = 0x05; p[2] = 0xc3;
  mprotect(p, 4096, PROT_READ | PROT_EXEC);
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(PAGE_AT + 2), 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  ptrace(PTRACE_TRACEME, 0, 0, 0);
  raise(SIGSTOP);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) _exit(90);
  long sum = 0;
  for (int i = 0; i < 20000; i++) sum += syscall(SYS_getppid) > 0 ? i : -1;
  _exit(sum == 199990000 ? 0 : 3);   /* every getppid answered, in the child's own run */
}

static pid_t pid;
static int move_tracee, cpu_a, cpu_b;
static struct user_regs_struct saved;
static int stops_a, stops_b;
static double t_park, t_resumed;

static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }

/* Run the tracee through seccomp stops until `limit` of them (or its exit); 1 if it exited. */
static int exit_status = -1;

static int serve(int *count, int limit) {
  for (;;) {
    int st;
    if (waitpid(pid, &st, __WALL) < 0) { perror("waitpid"); exit(1); }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      exit_status = st;
      return 1;
    }
    if ((st >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
      if (++*count == limit) return 0;
    }
    ptrace(PTRACE_CONT, pid, 0, 0);
  }
}

static void *thread_b(void *arg) {
  (void)arg;
  pin(0);
  if (move_tracee) {     /* to the new tracer's CPU: its stops cost what the first's did */
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu_b, &s);
    sched_setaffinity(pid, sizeof s, &s);
  }
  if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL)) { perror("seize"); exit(1); }
  if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) { perror("interrupt"); exit(1); }
  int st;
  waitpid(pid, &st, __WALL);
  struct user_regs_struct r;
  ptrace(PTRACE_GETREGS, pid, 0, &r);
  if ((st >> 16) != PTRACE_EVENT_STOP || r.orig_rax != SYS_futex) {
    fprintf(stderr, "B: not the parked futex (status 0x%x, syscall %lld)\n", st,
            (long long)r.orig_rax);
    exit(1);
  }
  struct user_regs_struct back = saved;
  back.rip -= 2;                 /* issue the interrupted syscall again */
  back.rax = saved.orig_rax;
  back.orig_rax = -1;
  ptrace(PTRACE_SETREGS, pid, 0, &back);
  t_resumed = now();
  ptrace(PTRACE_CONT, pid, 0, 0);
  serve(&stops_b, -1);
  return NULL;
}

int main(int argc, char **argv) {
  move_tracee = argc > 1 && atoi(argv[1]);
  cpu_a = argc > 2 ? atoi(argv[2]) : 1;
  cpu_b = argc > 3 ? atoi(argv[3]) : 0;
  pin(cpu_a);
  pid = fork();
  if (!pid) child();
  int st;
  waitpid(pid, &st, 0);
  ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
  ptrace(PTRACE_CONT, pid, 0, 0);
  double t0 = now();
  serve(&stops_a, 5000);           /* at a seccomp stop: hand it over */
  double t1 = now();
  t_park = t1;
  ptrace(PTRACE_GETREGS, pid, 0, &saved);
  struct user_regs_struct skip = saved;
  skip.orig_rax = -1;              /* the syscall is not run now */
  ptrace(PTRACE_SETREGS, pid, 0, &skip);
  ptrace(PTRACE_SYSCALL, pid, 0, 0);
  waitpid(pid, &st, __WALL);       /* its exit stop */
  struct user_regs_struct park = saved;
  park.rip = PAGE_AT;
  park.rax = SYS_futex;
  park.rdi = PAGE_AT + 0x20;       /* a word of int3s: never changes */
  park.rsi = FUTEX_WAIT_PRIVATE;
  park.rdx = 0xcccccccc;
  park.r10 = 0;
  ptrace(PTRACE_SETREGS, pid, 0, &park);
  if (ptrace(PTRACE_DETACH, pid, 0, 0)) { perror("detach"); return 1; }
  pthread_t b;
  pthread_create(&b, NULL, thread_b, NULL);
  pthread_join(b, NULL);
  double t2 = now();
  if (!WIFEXITED(exit_status) || WEXITSTATUS(exit_status)) {
    fprintf(stderr, "the tracee ended with status 0x%x\n", exit_status);
    return 1;
  }
  printf("%.3f %.3f %.1f\n", (t1 - t0) * 1e6 / stops_a, (t2 - t_resumed) * 1e6 / stops_b,
         (t_resumed - t_park) * 1e6);
  return 0;
}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("tracer_handover: needs two CPUs")
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "handover.c"), os.path.join(d, "handover")
        with open(src, "w") as f:
            f.write(PROGRAM)
        subprocess.run(["gcc", "-O1", "-pthread", "-o", exe, src], check=True)
        results: dict[int, list[tuple[float, ...]]] = {1: [], 0: []}
        for _ in range(args.runs):
            for move in (1, 0):
                out = subprocess.run([exe, str(move), str(cpus[-1]), str(cpus[0])],
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"tracer_handover: {out.stderr.strip() or out.returncode}")
                results[move].append(tuple(float(x) for x in out.stdout.split()))
    med = {m: [statistics.median(r[i] for r in rs) for i in range(3)] for m, rs in results.items()}
    print(f"a ptrace stop under tracer A (same CPU):        {med[1][0]:7.2f} us")
    print(f"after the handover, the child on B's CPU:        {med[1][1]:7.2f} us"
          f"   ({med[1][1] / med[1][0]:.2f}x)")
    print(f"after the handover, the child left on A's CPU:   {med[0][1]:7.2f} us"
          f"   ({med[0][1] / med[1][0]:.2f}x)")
    print(f"the handover itself (park, detach, seize, interrupt, registers back; "
          f"B's thread start included): {med[1][2]:.0f} us")


if __name__ == "__main__":
    main()
