// Command kubectl-terminal is the `kubectl terminal` plugin: open a shell in
// a container through a TerminalSession, attach, list and close sessions.
package main

import "github.com/meshery/terminal-apiserver/cmd/kubectl-terminal/app"

func main() { app.Main() }
