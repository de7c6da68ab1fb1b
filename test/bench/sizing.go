package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshery/terminal-apiserver/test/framework"
)

// The in-cluster sizing (make bench's last phase, run by
// hack/test-incluster.sh with the install in place): what the deployment's
// containers use as the kubelet measures them, which is what their
// requests and limits are held to. The server and NATS are separate
// processes there, as on a real cluster, where the rest of make bench runs
// the server with NATS embedded.
var (
	sizing       = flag.Bool("sizing", false, "measure the in-cluster install's containers (run by hack/test-incluster.sh)")
	sizingIdle   = flag.Int("sizing-idle", 500, "idle sessions for the in-cluster memory figures")
	sizingMiB    = flag.Int("sizing-mib", 128, "MiB of output (base64 text) for the in-cluster CPU figures")
	sizingRounds = flag.Int("sizing-rounds", 3, "rounds of the in-cluster CPU figures (median)")
)

// usage is one container's reading in the kubelet's stats summary.
type usage struct {
	workingSet, rss, cpuNanos float64
	at                        time.Time
}

// group sums the usage of the install's server and NATS containers.
type group struct{ server, nats usage }

// summary is the part of the kubelet's /stats/summary read here
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1).
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []struct {
			Name string `json:"name"`
			CPU  struct {
				Time                 time.Time `json:"time"`
				UsageCoreNanoSeconds float64   `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes float64 `json:"workingSetBytes"`
				RSSBytes        float64 `json:"rssBytes"`
			} `json:"memory"`
		} `json:"containers"`
	} `json:"pods"`
}

// stats reads the node's summary once it is newer than after (the kubelet
// samples containers every 10-15 s): the server's two replicas and the
// three NATS servers, each summed.
func stats(ctx context.Context, admin *kubernetes.Clientset, node, ns string, after time.Time) (group, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		raw, err := admin.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "stats", "summary").DoRaw(ctx)
		if err != nil {
			return group{}, fmt.Errorf("the kubelet's stats summary: %w", err)
		}
		var s summary
		if err := json.Unmarshal(raw, &s); err != nil {
			return group{}, err
		}
		var g group
		fresh, servers, natsServers := true, 0, 0
		for _, p := range s.Pods {
			if p.PodRef.Namespace != ns {
				continue
			}
			for _, c := range p.Containers {
				var u *usage
				switch {
				case c.Name == "terminal-apiserver":
					u, servers = &g.server, servers+1
				case c.Name == "nats" && strings.HasPrefix(p.PodRef.Name, "nats-"):
					u, natsServers = &g.nats, natsServers+1
				default:
					continue
				}
				u.workingSet += c.Memory.WorkingSetBytes
				u.rss += c.Memory.RSSBytes
				u.cpuNanos += c.CPU.UsageCoreNanoSeconds
				if u.at.IsZero() || c.CPU.Time.Before(u.at) {
					u.at = c.CPU.Time
				}
				fresh = fresh && c.CPU.Time.After(after)
			}
		}
		if servers != 2 || natsServers != 3 {
			return group{}, fmt.Errorf("the stats summary of node %s has %d server and %d NATS containers in %s, want 2 and 3", node, servers, natsServers, ns)
		}
		if fresh {
			return g, nil
		}
		if time.Now().After(deadline) {
			return group{}, fmt.Errorf("the kubelet's stats of node %s are not newer than %s after a minute", node, after.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return group{}, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// sizeInCluster prints the deployment's containers' memory at rest, per
// idle session, and CPU per MiB of output.
func (e *env) sizeInCluster(ctx context.Context) error {
	ns := os.Getenv("INCLUSTER_NAMESPACE")
	cfg, err := framework.RESTConfig(os.Getenv("KUBECONFIG"), "admin")
	if err != nil {
		return err
	}
	admin := kubernetes.NewForConfigOrDie(cfg)
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=terminal-apiserver"})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Errorf("the in-cluster server's pods in %q (run through hack/test-incluster.sh): %v", ns, err)
	}
	node := pods.Items[0].Spec.NodeName
	fmt.Printf("in-cluster install (%s): 2 server replicas, 3 NATS servers, as the kubelet measures their containers\n\n", ns)
	row := func(figure, server, nats string) { fmt.Printf("%-44s %18s %18s\n", figure, server, nats) }
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	row("figure", "server (2 replicas)", "NATS (3 servers)")

	// At rest, twice a sampling period apart: the idle CPU rate, taken
	// off the CPU figures below.
	rest0, err := stats(ctx, admin, node, ns, time.Now())
	if err != nil {
		return err
	}
	rest, err := stats(ctx, admin, node, ns, rest0.server.at.Add(20*time.Second))
	if err != nil {
		return err
	}
	idleRate := func(u0, u1 usage) float64 { return (u1.cpuNanos - u0.cpuNanos) / u1.at.Sub(u0.at).Seconds() }
	serverIdle, natsIdle := idleRate(rest0.server, rest.server), idleRate(rest0.nats, rest.nats)
	row("working set at rest", mib(rest.server.workingSet), mib(rest.nats.workingSet))
	row("RSS at rest", mib(rest.server.rss), mib(rest.nats.rss))
	row("CPU at rest", fmt.Sprintf("%.1f millicores", serverIdle/1e6), fmt.Sprintf("%.1f millicores", natsIdle/1e6))

	// The replicas' live memory after a forced collection, as the rest
	// of make bench reads it, to set beside the kubelet's figures (which
	// include what the collector has yet to free), each with the sessions
	// it runs.
	type replica struct {
		mem  memStats
		open float64
	}
	replicas := func() ([]replica, error) {
		var rs []replica
		for _, p := range pods.Items {
			addr := net.JoinHostPort(p.Status.PodIP, "8443")
			m, err := replicaMemory(addr)
			if err != nil {
				return nil, fmt.Errorf("replica %s: %w", p.Name, err)
			}
			metrics, err := replicaMetrics(addr)
			if err != nil {
				return nil, fmt.Errorf("replica %s: %w", p.Name, err)
			}
			rs = append(rs, replica{m, metrics["terminal_sessions_open"]})
		}
		return rs, nil
	}
	sum := func(rs []replica) (m memStats) {
		for _, r := range rs {
			m.rss, m.heapStack = m.rss+r.mem.rss, m.heapStack+r.mem.heapStack
		}
		return m
	}
	restLive, err := replicas()
	if err != nil {
		return err
	}

	names, err := e.openIdle(ctx, *sizingIdle, "sizing")
	defer e.closeIdle(names)
	if err != nil {
		return err
	}
	open, err := stats(ctx, admin, node, ns, time.Now().Add(15*time.Second))
	if err != nil {
		return err
	}
	n := float64(len(names))
	kib := func(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
	row(fmt.Sprintf("working set per idle session (n=%d)", len(names)), kib((open.server.workingSet-rest.server.workingSet)/n), kib((open.nats.workingSet-rest.nats.workingSet)/n))
	row("RSS per idle session", kib((open.server.rss-rest.server.rss)/n), kib((open.nats.rss-rest.nats.rss)/n))
	row(fmt.Sprintf("working set with %d idle sessions", len(names)), mib(open.server.workingSet), mib(open.nats.workingSet))
	openLive, err := replicas()
	if err != nil {
		return err
	}
	row("  after a forced GC: RSS per idle session", kib((sum(openLive).rss-sum(restLive).rss)/n), "-")
	row("  live heap and stacks per idle session", kib((sum(openLive).heapStack-sum(restLive).heapStack)/n), "-")
	// Split into what the replica running a session holds for it and what
	// every replica holds for every session (its informer's and watch
	// history's copies of the object): heap_r = run*open_r + each*n.
	d0, d1 := openLive[0].mem.heapStack-restLive[0].mem.heapStack, openLive[1].mem.heapStack-restLive[1].mem.heapStack
	s0, s1 := openLive[0].open, openLive[1].open
	fmt.Printf("  replicas run %.0f and %.0f of them; their live heap and stacks grew %.1f and %.1f MiB\n", s0, s1, d0/(1<<20), d1/(1<<20))
	if s0-s1 > n/5 || s1-s0 > n/5 {
		run := (d0 - d1) / (s0 - s1)
		each := (d0 - run*s0) / n
		row("  held by the replica running it", kib(run), "-")
		row("  held by every replica", kib(each), "-")
	}

	// CPU per MiB of output read through attach: rounds of text output,
	// the readings from before the round to after its end.
	var serverMS, natsMS, rates []float64
	for range *sizingRounds {
		s, deleteFn, err := e.create(ctx, textScript(*sizingMiB))
		if err != nil {
			return err
		}
		attach, err := e.attacher(s.Name)
		if err != nil {
			deleteFn()
			return err
		}
		before, err := stats(ctx, admin, node, ns, time.Now())
		if err != nil {
			deleteFn()
			return err
		}
		rate, err := readBulk(ctx, attach)
		deleteFn()
		if err != nil {
			return fmt.Errorf("in-cluster bulk output: %w", err)
		}
		after, err := stats(ctx, admin, node, ns, time.Now())
		if err != nil {
			return err
		}
		busy := func(u0, u1 usage, idle float64) float64 {
			return (u1.cpuNanos - u0.cpuNanos - idle*u1.at.Sub(u0.at).Seconds()) / 1e6 / float64(*sizingMiB)
		}
		serverMS = append(serverMS, busy(before.server, after.server, serverIdle))
		natsMS = append(natsMS, busy(before.nats, after.nats, natsIdle))
		rates = append(rates, rate)
	}
	ms := func(v float64) string { return fmt.Sprintf("%.1f ms", v) }
	row(fmt.Sprintf("CPU per MiB of output, median of %d", *sizingRounds), ms(median(serverMS)), ms(median(natsMS)))
	row("  per round", fmt.Sprint(round1(serverMS)), fmt.Sprint(round1(natsMS)))
	row("  throughput through attach, MiB/s", fmt.Sprint(round1(rates)), "")
	return nil
}

func round1(v []float64) []string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return s
}
