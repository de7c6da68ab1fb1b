package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshery/terminal-apiserver/pkg/console"
)

type uiOptions struct {
	port int
	open bool
}

func (o *options) uiCommand() *cobra.Command {
	u := &uiOptions{}
	cmd := &cobra.Command{
		Use:   "ui [--port PORT] [--open]",
		Short: "Serve the browser console on loopback",
		Long: "Serve the browser console on 127.0.0.1: a topology of the namespace's workloads and pods, terminals in " +
			"tabs, shared sessions. The browser reaches the cluster only through this command, with your kubeconfig's " +
			"credentials; the printed URL carries a per-run token, and no other page or program may use it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.serveUI(cmd.Context(), u) },
	}
	cmd.Flags().IntVar(&u.port, "port", 0, "Loopback port to listen on (0: a new free one each run, the safer choice: docs/console.md)")
	cmd.Flags().BoolVar(&u.open, "open", false, "Open the console in the default browser")
	return cmd
}

func (o *options) serveUI(ctx context.Context, u *uiOptions) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return err
	}
	loader := o.flags.ToRawKubeConfigLoader()
	ns, _, err := loader.Namespace()
	if err != nil {
		return err
	}
	raw, err := loader.RawConfig()
	if err != nil {
		return err
	}
	kctx := raw.CurrentContext
	if o.flags.Context != nil && *o.flags.Context != "" {
		kctx = *o.flags.Context
	}
	// Loopback only: the console holds the user's credentials.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(u.port)))
	if err != nil {
		return fmt.Errorf("listening on 127.0.0.1:%d: %w", u.port, err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	token := console.NewToken()
	h, err := console.Handler(console.Options{Config: cfg, Port: port, Token: token,
		Settings: console.Settings{Namespace: ns, Context: kctx}})
	if err != nil {
		return err
	}
	// The token goes in the fragment: browsers never send it to a server.
	// The query is new at every run, so no page an earlier server on this
	// port left in the browser's cache is taken for the console.
	url := fmt.Sprintf("http://127.0.0.1:%d/?run=%s#token=%s", port, console.NewToken()[:12], token)
	fmt.Fprintf(o.streams.Out, "Console for context %q at %s\n(the URL is a password while this runs: Ctrl-C to stop)\n", kctx, url)
	if u.open {
		file, err := openBrowser(url)
		if file != "" {
			defer os.Remove(file)
		}
		if err != nil {
			fmt.Fprintf(o.streams.ErrOut, "could not open a browser (%v): open the URL above\n", err)
		} else {
			fmt.Fprintln(o.streams.ErrOut, "opening the console in your browser (if it cannot open the file it is given, paste the URL above)")
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // terminals' WebSockets are hijacked: they end with the process
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// openBrowser opens url through a file that only the user may read which
// sends the browser on: a command line is visible to every user of the
// machine, and the URL holds the token (as Jupyter does). The file is
// removed a minute later, when the browser has long read it, or when the
// console stops (the caller removes the file returned).
func openBrowser(url string) (string, error) {
	f, err := os.CreateTemp("", "kubectl-terminal-ui-*.html") // 0600
	if err != nil {
		return "", err
	}
	_, err = fmt.Fprintf(f, "<!doctype html><meta charset=\"utf-8\"><title>Terminal console</title>\n"+
		"<script>location.replace(%q)</script><a href=%q>Open the terminal console</a>\n", url, url)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	time.AfterFunc(time.Minute, func() { _ = os.Remove(f.Name()) })
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", f.Name())
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", f.Name())
	default:
		cmd = exec.Command("xdg-open", f.Name())
	}
	if err := cmd.Start(); err != nil {
		return f.Name(), err
	}
	go func() { _ = cmd.Wait() }()
	return f.Name(), nil
}
