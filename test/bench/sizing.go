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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
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

// group sums the usage of the install's server and NATS containers, and
// keeps each container's (by pod) for CPU rates from its own sample times.
type group struct {
	server, nats   usage
	servers, natss map[string]usage
}

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
	deadline := time.Now().Add(3 * time.Minute)
	for {
		g, why := readStats(ctx, admin, node, ns, after)
		if why == nil {
			return g, nil
		}
		if time.Now().After(deadline) {
			return group{}, fmt.Errorf("the kubelet's stats of node %s after 3 minutes: %w", node, why)
		}
		select {
		case <-ctx.Done():
			return group{}, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// readStats reads the summary once; an error says why it will not do yet.
func readStats(ctx context.Context, admin *kubernetes.Clientset, node, ns string, after time.Time) (group, error) {
	// The kubelet's listing of container stats times out now and then on
	// a busy node (a thousand exec processes): the caller tries again.
	raw, err := admin.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "stats", "summary").DoRaw(ctx)
	if err != nil {
		return group{}, err
	}
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return group{}, err
	}
	g := group{servers: map[string]usage{}, natss: map[string]usage{}}
	fresh := true
	for _, p := range s.Pods {
		if p.PodRef.Namespace != ns {
			continue
		}
		for _, c := range p.Containers {
			var sum *usage
			var each map[string]usage
			switch {
			case c.Name == "terminal-apiserver":
				sum, each = &g.server, g.servers
			case c.Name == "nats" && strings.HasPrefix(p.PodRef.Name, "nats-"):
				sum, each = &g.nats, g.natss
			default:
				continue
			}
			u := usage{workingSet: c.Memory.WorkingSetBytes, rss: c.Memory.RSSBytes, cpuNanos: c.CPU.UsageCoreNanoSeconds, at: c.CPU.Time}
			each[p.PodRef.Name] = u
			sum.workingSet += u.workingSet
			sum.rss += u.rss
			sum.cpuNanos += u.cpuNanos
			if sum.at.IsZero() || u.at.Before(sum.at) {
				sum.at = u.at
			}
			fresh = fresh && u.at.After(after)
		}
	}
	// A replica just replaced may be listed for a while, a new one not
	// yet: wait for the two.
	if len(g.servers) != 2 || len(g.natss) != 3 {
		return group{}, fmt.Errorf("%d server and %d NATS containers in %s, want 2 and 3", len(g.servers), len(g.natss), ns)
	}
	if !fresh {
		return group{}, fmt.Errorf("samples not newer than %s yet", after.Format(time.RFC3339))
	}
	return g, nil
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
	// Each container's CPU rate at rest, from its own sample times.
	idleRates := func(from, to map[string]usage) map[string]float64 {
		r := map[string]float64{}
		for k, u1 := range to {
			u0 := from[k]
			r[k] = (u1.cpuNanos - u0.cpuNanos) / u1.at.Sub(u0.at).Seconds()
		}
		return r
	}
	total := func(r map[string]float64) (t float64) {
		for _, v := range r {
			t += v
		}
		return t
	}
	serverIdle, natsIdle := idleRates(rest0.servers, rest.servers), idleRates(rest0.natss, rest.natss)
	row("working set at rest", mib(rest.server.workingSet), mib(rest.nats.workingSet))
	row("RSS at rest", mib(rest.server.rss), mib(rest.nats.rss))
	row("CPU at rest", fmt.Sprintf("%.1f millicores", total(serverIdle)/1e6), fmt.Sprintf("%.1f millicores", total(natsIdle)/1e6))

	// The replicas' live memory after a forced collection, as the rest
	// of make bench reads it, to set beside the kubelet's figures (which
	// include what the collector has yet to free).
	replicas := func() (sum memStats, err error) {
		for _, p := range pods.Items {
			m, err := replicaMemory(net.JoinHostPort(p.Status.PodIP, "8443"))
			if err != nil {
				return sum, fmt.Errorf("replica %s: %w", p.Name, err)
			}
			sum.rss, sum.heapStack = sum.rss+m.rss, sum.heapStack+m.heapStack
		}
		return sum, nil
	}
	restLive, err := replicas()
	if err != nil {
		return err
	}

	names, err := e.openIdle(ctx, *sizingIdle, "sizing")
	if err != nil {
		e.closeIdle(names)
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
	row("  after a forced GC: RSS per idle session", kib((openLive.rss-restLive.rss)/n), "-")
	row("  live heap and stacks per idle session", kib((openLive.heapStack-restLive.heapStack)/n), "-")
	// The CPU rounds below run with none of them open. (Their processes
	// stay in the pod, idle: deleting a pod with five hundred exec
	// processes keeps the kubelet's stats timing out for minutes.)
	if err := e.closeIdleAndWait(ctx, names, "sizing"); err != nil {
		return err
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
		// The CPU beyond each container's rate at rest, per MiB.
		busy := func(from, to map[string]usage, idle map[string]float64) float64 {
			var ns float64
			for k, u1 := range to {
				u0 := from[k]
				ns += u1.cpuNanos - u0.cpuNanos - idle[k]*u1.at.Sub(u0.at).Seconds()
			}
			return ns / 1e6 / float64(*sizingMiB)
		}
		serverMS = append(serverMS, busy(before.servers, after.servers, serverIdle))
		natsMS = append(natsMS, busy(before.natss, after.natss, natsIdle))
		rates = append(rates, rate)
	}
	ms := func(v float64) string { return fmt.Sprintf("%.1f ms", v) }
	row(fmt.Sprintf("CPU per MiB of output, median of %d", *sizingRounds), ms(median(serverMS)), ms(median(natsMS)))
	row("  per round", fmt.Sprint(round1(serverMS)), fmt.Sprint(round1(natsMS)))
	row("  throughput through attach, MiB/s", fmt.Sprint(round1(rates)), "")
	// Last: it replaces a replica, and the kubelet's stats of the node
	// time out for minutes after (a thousand exec processes ending).
	return e.attribute(ctx, admin, ns, restLive.heapStack/float64(len(pods.Items)))
}

// attribute splits a session's live memory into what the replica running
// it holds and what a replica that only knows of it holds (the object in
// its informer): one replica runs them all, then a second one starts beside
// it and loads them. The new one is measured against restFresh, a replica's
// live heap when it was as new (a replica's heap at rest grows with what
// it did: its watch history keeps the last changes, deleted sessions'
// included, up to --watch-history-bytes).
func (e *env) attribute(ctx context.Context, admin *kubernetes.Clientset, ns string, restFresh float64) error {
	live := func(p corev1.Pod) (memStats, error) {
		return replicaMemory(net.JoinHostPort(p.Status.PodIP, "8443"))
	}
	one, err := e.scaleServer(ctx, admin, ns, 1)
	if err != nil {
		return err
	}
	rest, err := live(one[0])
	if err != nil {
		return err
	}
	names, err := e.openIdle(ctx, *sizingIdle, "attribute")
	defer func() { _ = e.closeIdleAndWait(ctx, names, "attribute") }()
	if err != nil {
		return err
	}
	running, err := live(one[0])
	if err != nil {
		return err
	}
	two, err := e.scaleServer(ctx, admin, ns, 2)
	if err != nil {
		return err
	}
	var knowing memStats
	for _, p := range two {
		if p.Name != one[0].Name {
			if knowing, err = live(p); err != nil {
				return err
			}
		}
	}
	n := float64(len(names))
	fmt.Printf("\nlive heap and stacks per idle session (n=%d), after a forced GC:\n", len(names))
	fmt.Printf("  %-66s %8.1f KiB\n", "on the replica running it (one running all; its watch history included)", (running.heapStack-rest.heapStack)/1024/n)
	fmt.Printf("  %-66s %8.1f KiB\n", "on a replica that only knows of it (started beside it)", (knowing.heapStack-restFresh)/1024/n)
	return nil
}

// scaleServer sets the deployment's replicas and waits until that many
// pods are ready and no other is left; it returns them.
func (e *env) scaleServer(ctx context.Context, admin *kubernetes.Clientset, ns string, replicas int32) ([]corev1.Pod, error) {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := admin.AppsV1().Deployments(ns).Patch(ctx, "terminal-apiserver", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return nil, err
	}
	var ready []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=terminal-apiserver"})
		if err != nil {
			return false, nil
		}
		ready = nil
		for _, p := range l.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready = append(ready, p)
				}
			}
		}
		return len(l.Items) == int(replicas) && len(ready) == int(replicas), nil
	})
	if err != nil {
		return nil, fmt.Errorf("scaling terminal-apiserver to %d: %w", replicas, err)
	}
	return ready, nil
}

func round1(v []float64) []string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return s
}
