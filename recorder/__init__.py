"""The recorder: runs a program under ptrace + seccomp and writes its trace."""
