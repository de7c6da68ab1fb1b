// Package framework is what the e2e tests and the benchmarks share to reach
// the local system that hack/local-up.sh runs: clients for its kubeconfig
// contexts and its NATS, TerminalSessions created and waited for, attach
// URLs and executors as kubectl's, and screens that collect a terminal's
// output. It returns errors rather than failing a test: the benchmarks are
// a program, not a test.
package framework

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig is the client configuration of one of the local kubeconfig's
// contexts (admin, alice, bob, viewer), with room for the many calls a
// test or benchmark makes.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: context},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s, context %s: %w", kubeconfig, context, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// NATS connects to the local server's NATS as the environment hack/lib
// exports says: TERMINAL_APISERVER_NATS_URL, _USER and _PASSWORD_FILE.
func NATS() (*nats.Conn, jetstream.JetStream, error) {
	url := os.Getenv("TERMINAL_APISERVER_NATS_URL")
	if url == "" {
		return nil, nil, fmt.Errorf("TERMINAL_APISERVER_NATS_URL is unset (run through make)")
	}
	pw, err := os.ReadFile(os.Getenv("TERMINAL_APISERVER_NATS_PASSWORD_FILE"))
	if err != nil {
		return nil, nil, fmt.Errorf("the local NATS password (TERMINAL_APISERVER_NATS_PASSWORD_FILE): %w", err)
	}
	nc, err := nats.Connect(url, nats.UserInfo(os.Getenv("TERMINAL_APISERVER_NATS_USER"), strings.TrimSpace(string(pw))))
	if err != nil {
		return nil, nil, fmt.Errorf("NATS %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
