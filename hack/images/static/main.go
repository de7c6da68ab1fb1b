// Command static is the whole of the shell-less test image: one static
// binary and nothing else, as a distroless application is. A terminal into
// it finds no shell; debugging it takes an ephemeral container.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fmt.Println("static: running without a shell")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}
