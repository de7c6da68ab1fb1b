/* The pod sandbox's process: it holds the pod's namespaces and does nothing
 * else until it is told to stop. Built static, so the image is this file
 * alone. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

int main(void) {
	signal(SIGINT, stop);
	signal(SIGTERM, stop);
	for (;;)
		pause();
}
