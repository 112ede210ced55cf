// Exits at once with the code in argv[1] (static, no work before _exit): in a sandbox it is
// usually gone before nsbox-init, exec'd beside it, starts waiting (init test).
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char** argv) { _exit(argc > 1 ? atoi(argv[1]) : 0); }
