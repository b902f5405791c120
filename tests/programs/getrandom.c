// Exercises the getrandom(2) syscall (output differs per run; replay must reproduce it).
#include <stdio.h>
#include <sys/random.h>

int main(void)
{
    unsigned char buf[32];
    ssize_t n = getrandom(buf, sizeof buf, 0);
    if (n != (ssize_t)sizeof buf) { perror("getrandom"); return 1; }
    printf("got %zd bytes: ", n);
    for (int i = 0; i < 32; i++)
        printf("%02x", buf[i]);
    printf("\n");
    return 0;
}
