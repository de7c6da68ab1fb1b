package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The real node has kube-apiserver listen on every address (pods reach it
// at the node's), and the kubelet and CoreDNS on the machine's own address,
// which is on its LAN: make up drops what reaches those ports from anywhere
// but this machine and its pods. A network namespace stands in for another
// host on a network routed to this one (198.51.100.0/24, TEST-NET-2): its
// connections to the three ports go unanswered, while this machine's own
// connect.
func TestLocalNodeIsNotReachableFromTheLAN(t *testing.T) {
	if os.Getenv("LOCAL_NODE") == "kwok" {
		t.Skip("LOCAL_NODE=kwok: kube-apiserver listens on loopback only, and there is no kubelet or CoreDNS")
	}
	t.Parallel()
	nodeIP := firstGlobalIPv4(t)
	ports := map[string]string{
		"kube-apiserver": os.Getenv("KUBE_APISERVER_PORT"),
		"the kubelet":    os.Getenv("KUBELET_PORT"),
		"CoreDNS":        "53",
	}
	for what, port := range ports {
		if port == "" {
			t.Fatalf("no port for %s in the environment (hack/e2e.sh sources _output/local/env.sh)", what)
		}
		// From this machine: listening.
		c, err := net.DialTimeout("tcp", net.JoinHostPort(nodeIP, port), 5*time.Second)
		if err != nil {
			t.Fatalf("%s on %s:%s from this machine: %v", what, nodeIP, port, err)
		}
		c.Close()
	}

	if out, _ := exec.Command("ip", "-4", "-o", "addr", "show").Output(); strings.Contains(string(out), " 198.51.100.") {
		t.Fatalf("this machine has an address in 198.51.100.0/24, the test's stand-in LAN:\n%s", out)
	}
	ns := fmt.Sprintf("tl-lan-%d", os.Getpid())
	host, peer := ns+"-h", ns+"-p"
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	sh(t, "ip", "link", "set", peer, "netns", ns)
	sh(t, "ip", "addr", "add", "198.51.100.1/24", "dev", host)
	sh(t, "ip", "link", "set", host, "up")
	sh(t, "ip", "-n", ns, "addr", "add", "198.51.100.2/24", "dev", peer)
	sh(t, "ip", "-n", ns, "link", "set", peer, "up")
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	sh(t, "ip", "-n", ns, "route", "add", "default", "via", "198.51.100.1")

	// The same host's ports other than these answer it: the route works and
	// only the guarded ports are dropped.
	probe := func(port string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "timeout", "3",
			"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", nodeIP, port)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, open, _ := net.SplitHostPort(l.Addr().String())
	if err := probe(open); err != nil {
		t.Fatalf("from the LAN host, an unguarded port (%s) of this machine: %v; the test's network does not route", open, err)
	}
	for what, port := range ports {
		if err := probe(port); err == nil {
			t.Errorf("%s on %s:%s answers a host on the LAN", what, nodeIP, port)
		}
	}
}

// sh runs a command, failing the test if it fails.
func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// firstGlobalIPv4 is the machine's address as hack/lib/node.sh's node_ip
// finds it.
func firstGlobalIPv4(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'`).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("no global IPv4 address: %v", err)
	}
	return strings.TrimSpace(string(out))
}
