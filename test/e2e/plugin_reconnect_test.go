package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// cuttable forwards TCP connections to kube-apiserver and can cut them
// all at once: a network that drops.
type cuttable struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startCuttable(t *testing.T, target string) *cuttable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cuttable{ln: ln}
	t.Cleanup(func() { ln.Close(); c.cut() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, client, server)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(server, client); server.Close() }()
			go func() { _, _ = io.Copy(client, server); client.Close() }()
		}
	}()
	return c
}

func (c *cuttable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// kubeconfigVia is the test kubeconfig with kube-apiserver reached through
// the address addr (same certificates: 127.0.0.1 is in its SANs).
func kubeconfigVia(t *testing.T, addr string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cluster := range cfg.Clusters {
		u, err := url.Parse(cluster.Server)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = addr
		cluster.Server = u.String()
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The plugin's connection drops: it says so, reattaches where the output
// left off (nothing shown twice), and the keys typed meanwhile arrive.
func TestPluginReconnects(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := clientcmd.LoadFromFile(env.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Clusters[cfg.Contexts["alice"].Cluster].Server)
	if err != nil {
		t.Fatal(err)
	}
	network := startCuttable(t, u.Host)
	kubeconfig := kubeconfigVia(t, network.ln.Addr().String())

	cmd, _, screen, typeLine := runPlugin(ctx, t, kubeconfig, "--context", "alice", "-n", "team-a", "shell-demo")
	typeLine("echo before-$((1+1))")
	eventually(t, 30*time.Second, "output before the drop", func(context.Context) (bool, error) {
		return strings.Contains(screen.String(), "before-2"), nil
	})
	network.cut()
	eventually(t, 30*time.Second, "the plugin noticing", func(context.Context) (bool, error) {
		return strings.Contains(screen.String(), "connection lost"), nil
	})
	typeLine("echo after-$((2+2))")
	eventually(t, 30*time.Second, "output after reconnecting", func(context.Context) (bool, error) {
		return strings.Contains(screen.String(), "after-4"), nil
	})
	if got := screen.String(); strings.Count(got, "before-2") != 1 || !strings.Contains(got, "[kubectl terminal: reconnected]") || strings.Contains(got, "UnhandledError") {
		t.Errorf("want the output before the drop once, a reconnect notice and no client-go log; screen:\n%s", got)
	}
	typeLine("exit 6")
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 6 {
		t.Fatalf("plugin ended with %v, want exit code 6", err)
	}
}
