/* program_filter.c: a recorded program's own seccomp filters. The recorder never installs
 * them: stacked on the tracee filter, a filter that answers a syscall (SECCOMP_RET_ERRNO)
 * would answer it before the recorder ever saw it. It keeps them and runs them itself, as the
 * kernel would, at every syscall the program makes; what they answer is recorded like any
 * answer of the recorder's (recorder.c: record_answer), so replay needs no filter. */

#define RRV_MAX_PROGRAM_FILTERS 32  /* the kernel's limit is on total length; ours is simpler */
#define RRV_BPF_MAXINSNS 4096

struct program_filters {
  int count, strict;                /* strict: SECCOMP_MODE_STRICT */
  unsigned short len[RRV_MAX_PROGRAM_FILTERS];
  struct sock_filter *insns[RRV_MAX_PROGRAM_FILTERS];
};

/* Is this classic BPF program one the kernel would accept as a seccomp filter (the
 * instructions seccomp allows, loads within struct seccomp_data, jumps inside the program, a
 * return at the end)? */
static int filter_valid(const struct sock_filter *f, unsigned len) {
  if (len == 0 || len > RRV_BPF_MAXINSNS) return 0;
  for (unsigned pc = 0; pc < len; pc++) {
    const struct sock_filter *i = &f[pc];
    switch (i->code) {
      case BPF_LD | BPF_W | BPF_ABS:
        if (i->k & 3 || i->k >= sizeof(struct seccomp_data)) return 0;
        break;
      case BPF_LD | BPF_MEM: case BPF_LDX | BPF_MEM: case BPF_ST: case BPF_STX:
        if (i->k >= 16) return 0;
        break;
      case BPF_JMP | BPF_JA:
        if (i->k >= len - pc - 1) return 0;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K: case BPF_JMP | BPF_JEQ | BPF_X:
      case BPF_JMP | BPF_JGT | BPF_K: case BPF_JMP | BPF_JGT | BPF_X:
      case BPF_JMP | BPF_JGE | BPF_K: case BPF_JMP | BPF_JGE | BPF_X:
      case BPF_JMP | BPF_JSET | BPF_K: case BPF_JMP | BPF_JSET | BPF_X:
        if (i->jt >= len - pc - 1 || i->jf >= len - pc - 1) return 0;
        break;
      case BPF_ALU | BPF_DIV | BPF_K: case BPF_ALU | BPF_MOD | BPF_K:
        if (i->k == 0) return 0;
        break;
      case BPF_LD | BPF_W | BPF_LEN: case BPF_LDX | BPF_W | BPF_LEN: case BPF_LD | BPF_IMM:
      case BPF_LDX | BPF_IMM: case BPF_RET | BPF_K: case BPF_RET | BPF_A:
      case BPF_MISC | BPF_TAX: case BPF_MISC | BPF_TXA: case BPF_ALU | BPF_NEG:
      case BPF_ALU | BPF_DIV | BPF_X: case BPF_ALU | BPF_MOD | BPF_X:
      case BPF_ALU | BPF_ADD | BPF_K: case BPF_ALU | BPF_ADD | BPF_X:
      case BPF_ALU | BPF_SUB | BPF_K: case BPF_ALU | BPF_SUB | BPF_X:
      case BPF_ALU | BPF_MUL | BPF_K: case BPF_ALU | BPF_MUL | BPF_X:
      case BPF_ALU | BPF_OR | BPF_K: case BPF_ALU | BPF_OR | BPF_X:
      case BPF_ALU | BPF_AND | BPF_K: case BPF_ALU | BPF_AND | BPF_X:
      case BPF_ALU | BPF_XOR | BPF_K: case BPF_ALU | BPF_XOR | BPF_X:
      case BPF_ALU | BPF_LSH | BPF_K: case BPF_ALU | BPF_LSH | BPF_X:
      case BPF_ALU | BPF_RSH | BPF_K: case BPF_ALU | BPF_RSH | BPF_X:
        break;
      default:
        return 0;
    }
  }
  return BPF_CLASS(f[len - 1].code) == BPF_RET;
}

/* One validated filter's answer for a syscall. */
static uint32_t filter_run(const struct sock_filter *f, unsigned len, const struct seccomp_data *d) {
  uint32_t A = 0, X = 0, M[16] = {0};
  for (unsigned pc = 0; pc < len; pc++) {
    const struct sock_filter *i = &f[pc];
    uint32_t src = BPF_SRC(i->code) == BPF_X ? X : i->k;
    switch (i->code) {
      case BPF_LD | BPF_W | BPF_ABS: memcpy(&A, (const char *)d + i->k, 4); break;
      case BPF_LD | BPF_W | BPF_LEN: A = sizeof *d; break;
      case BPF_LDX | BPF_W | BPF_LEN: X = sizeof *d; break;
      case BPF_LD | BPF_IMM: A = i->k; break;
      case BPF_LDX | BPF_IMM: X = i->k; break;
      case BPF_LD | BPF_MEM: A = M[i->k]; break;
      case BPF_LDX | BPF_MEM: X = M[i->k]; break;
      case BPF_ST: M[i->k] = A; break;
      case BPF_STX: M[i->k] = X; break;
      case BPF_MISC | BPF_TAX: X = A; break;
      case BPF_MISC | BPF_TXA: A = X; break;
      case BPF_ALU | BPF_NEG: A = -A; break;
      case BPF_JMP | BPF_JA: pc += i->k; break;
      case BPF_RET | BPF_K: return i->k;
      case BPF_RET | BPF_A: return A;
      default:
        if (BPF_CLASS(i->code) == BPF_JMP) {
          int taken = BPF_OP(i->code) == BPF_JEQ ? A == src : BPF_OP(i->code) == BPF_JGT ? A > src
                      : BPF_OP(i->code) == BPF_JGE ? A >= src : (A & src) != 0;
          pc += taken ? i->jt : i->jf;
        } else switch (BPF_OP(i->code)) {   /* BPF_ALU */
          case BPF_ADD: A += src; break;
          case BPF_SUB: A -= src; break;
          case BPF_MUL: A *= src; break;
          case BPF_DIV: if (!src) return 0; A /= src; break;   /* the kernel returns 0 */
          case BPF_MOD: if (!src) return 0; A %= src; break;
          case BPF_OR: A |= src; break;
          case BPF_AND: A &= src; break;
          case BPF_XOR: A ^= src; break;
          case BPF_LSH: A = src < 32 ? A << src : 0; break;
          case BPF_RSH: A = src < 32 ? A >> src : 0; break;
        }
    }
  }
  return SECCOMP_RET_KILL_PROCESS;
}

/* What the program's filters say of a syscall: the most restrictive answer of all of them,
 * as the kernel decides (SECCOMP_RET_ALLOW when it installed none). */
static uint32_t program_filters_answer(const struct program_filters *pf, const struct rrv_regs *regs) {
  if (!pf) return SECCOMP_RET_ALLOW;
  if (pf->strict) {
    int64_t nr = regs->orig_rax;
    return nr == SYS_read || nr == SYS_write || nr == SYS_exit || nr == SYS_rt_sigreturn
               ? SECCOMP_RET_ALLOW : SECCOMP_RET_KILL_THREAD;
  }
  struct seccomp_data d = {.nr = (int)regs->orig_rax, .arch = AUDIT_ARCH_X86_64,
                           .instruction_pointer = regs->rip,
                           .args = {regs->rdi, regs->rsi, regs->rdx, regs->r10, regs->r8, regs->r9}};
  uint32_t answer = SECCOMP_RET_ALLOW;
  for (int n = pf->count - 1; n >= 0; n--) {
    uint32_t a = filter_run(pf->insns[n], pf->len[n], &d);
    if ((int32_t)(a & SECCOMP_RET_ACTION_FULL) < (int32_t)(answer & SECCOMP_RET_ACTION_FULL))
      answer = a;
  }
  return answer;
}

/* Install a filter the program asks for (seccomp(SECCOMP_SET_MODE_FILTER, flags, prog) or
 * prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog), prog at `prog`): 0, or -errno as the kernel
 * would answer. */
static int program_filters_add(struct program_filters **ppf, int pid, uint64_t prog, int strict,
                               int no_new_privs) {
  if (!no_new_privs && geteuid() != 0) return -EACCES;   /* needs either, as in the kernel */
  struct program_filters *pf = *ppf;
  if (!pf && !(pf = *ppf = calloc(1, sizeof *pf))) return -ENOMEM;
  if (strict) {
    pf->strict = 1;
    return 0;
  }
  struct { uint16_t len; uint16_t pad[3]; uint64_t filter; } fprog;
  if (rrv_read_mem(pid, prog, &fprog, sizeof fprog) != sizeof fprog) return -EFAULT;
  if (pf->count == RRV_MAX_PROGRAM_FILTERS) return -ENOMEM;
  if (fprog.len == 0 || fprog.len > RRV_BPF_MAXINSNS) return -EINVAL;
  struct sock_filter *insns = malloc(fprog.len * sizeof *insns);
  if (!insns) return -ENOMEM;
  if (rrv_read_mem(pid, fprog.filter, insns, fprog.len * sizeof *insns) !=
      (ssize_t)(fprog.len * sizeof *insns)) {
    free(insns);
    return -EFAULT;
  }
  if (!filter_valid(insns, fprog.len)) {
    free(insns);
    return -EINVAL;
  }
  pf->insns[pf->count] = insns;
  pf->len[pf->count++] = fprog.len;
  return 0;
}

/* A forked child inherits its parent's filters: its own copy. NULL if none (or no memory). */
static struct program_filters *program_filters_copy(const struct program_filters *pf) {
  if (!pf) return NULL;
  struct program_filters *copy = calloc(1, sizeof *copy);
  if (!copy) return NULL;
  *copy = *pf;
  for (int i = 0; i < pf->count; i++) {
    copy->insns[i] = malloc(pf->len[i] * sizeof *pf->insns[i]);
    if (!copy->insns[i]) {
      copy->count = i;
      return copy;      /* fewer filters than the parent: refused at adoption (see there) */
    }
    memcpy(copy->insns[i], pf->insns[i], pf->len[i] * sizeof *pf->insns[i]);
  }
  return copy;
}
