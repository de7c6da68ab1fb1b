// Command terminal-apiserver is the Kubernetes aggregated API server for
// TerminalSessions.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/meshery/terminal-apiserver/cmd/terminal-apiserver/app"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(app.NewCommand(ctx)))
}
