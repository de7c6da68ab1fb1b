package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster is a JetStream cluster of three nats-server processes on
// loopback (the version go.mod pins, built by hack/e2e.sh), each with a
// store of its own, that a test kills (SIGKILL) and starts again.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

type natsNode struct {
	name    string
	port    int
	conf    string
	logPath string
	cmd     *exec.Cmd
}

func startNATSCluster(t *testing.T, name string) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	routePorts := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i, rp := range routePorts {
		n := &natsNode{name: fmt.Sprintf("%s-%d", name, i), port: freePort(t)}
		dir := t.TempDir()
		n.conf = filepath.Join(dir, "nats.conf")
		n.logPath = filepath.Join(env.localDir, "logs", "e2e-nats-"+n.name+".log")
		conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
jetstream { store_dir: %q }
cluster { name: %q, listen: "127.0.0.1:%d", routes: [%s] }
`, n.name, n.port, filepath.Join(dir, "js"), name, rp, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	for i := range c.nodes {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.kill(i)
		}
	})
	return c
}

// url lists every node, as --nats-url takes them.
func (c *natsCluster) url() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	n.cmd = exec.Command(filepath.Join(env.root, "_output/bin/nats-server"), "-c", n.conf)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", n.port)
	eventually(c.t, 30*time.Second, "NATS node "+n.name+" accepting clients", func(context.Context) (bool, error) {
		nc, err := nats.Connect(url, nats.NoReconnect())
		if err == nil {
			nc.Close()
		}
		return err == nil, nil
	})
}

// kill ends node i with SIGKILL: no lame-duck mode, nothing flushed.
func (c *natsCluster) kill(i int) {
	n := c.nodes[i]
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// index is the node named name.
func (c *natsCluster) index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	c.t.Fatalf("no NATS node %q", name)
	return -1
}

// jetStream connects to the whole cluster, as the replicas do.
func (c *natsCluster) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(c.url(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamLeader is the node leading stream.
func (c *natsCluster) streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1, err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return -1, fmt.Errorf("stream %s has no leader", stream)
	}
	return c.index(info.Cluster.Leader), nil
}

// waitCurrent waits until every stream has a leader and both followers are
// current: the cluster is whole again.
func (c *natsCluster) waitCurrent(ctx context.Context, js jetstream.JetStream, timeout time.Duration) {
	c.t.Helper()
	var last string
	defer func() {
		if c.t.Failed() {
			c.t.Logf("NATS cluster: last seen %s", last)
		}
	}()
	eventually(c.t, timeout, "every stream led and on three current replicas", func(ctx context.Context) (bool, error) {
		// A request whose answer is lost in a reconnect would wait out
		// the whole timeout: each poll has its own.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		n := 0
		for name := range names.Name() {
			n++
			s, err := js.Stream(ctx, name)
			if err != nil {
				last = fmt.Sprintf("%s: %v", name, err)
				return false, nil
			}
			cl := s.CachedInfo().Cluster
			if cl == nil || cl.Leader == "" || len(cl.Replicas) != len(c.nodes)-1 {
				last = fmt.Sprintf("%s: %+v", name, cl)
				return false, nil
			}
			for _, p := range cl.Replicas {
				if !p.Current || p.Offline {
					last = fmt.Sprintf("%s: replica %s current %v offline %v", name, p.Name, p.Current, p.Offline)
					return false, nil
				}
			}
		}
		if names.Err() != nil {
			last = names.Err().Error()
			return false, nil
		}
		return n > 0, nil
	})
}
