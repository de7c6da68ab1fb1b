// Package app is the kubectl-terminal plugin: it opens TerminalSessions and
// attaches to them, with kubectl's kubeconfig, context and namespace flags.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/klog/v2"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/util/term"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/pkg/version"
)

// NewCommand is `kubectl terminal`.
func NewCommand(streams genericclioptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	o := &options{flags: flags, streams: streams}
	cmd := &cobra.Command{
		Use: "terminal (POD | TYPE/NAME) [-c CONTAINER] [--keep] [-- COMMAND [args...]]",
		// Help and usage name the plugin as kubectl users type it.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl terminal"},
		Short:       "Open a shell in a container through a TerminalSession",
		Long: "Open a shell in a container: creates a TerminalSession (so the cluster's RBAC and audit apply, " +
			"and the session survives a dropped connection), attaches to it, and deletes it on exit unless --keep.",
		Example: "  kubectl terminal shell-demo\n  kubectl terminal deploy/web -c app -- sh\n" +
			"  kubectl terminal ls\n  kubectl terminal ui --open\n  kubectl terminal replay shell-demo-x7k2p --speed 2\n  kubectl terminal attach shell-demo-x7k2p\n  kubectl terminal close shell-demo-x7k2p",
		Args:          cobra.MinimumNArgs(1),
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, command := args[0], args[1:]
			if i := cmd.ArgsLenAtDash(); i >= 0 {
				if i != 1 {
					return fmt.Errorf("expected one POD or TYPE/NAME before --, got %d arguments", i)
				}
			} else if len(args) > 1 {
				return fmt.Errorf("unexpected arguments %q: put the command after --", args[1:])
			}
			return o.open(cmd.Context(), target, command)
		},
	}
	flags.AddFlags(cmd.PersistentFlags())
	cmd.Flags().StringVarP(&o.container, "container", "c", "", "Container name; defaults to the pod's default container")
	cmd.Flags().BoolVar(&o.keep, "keep", false, "Keep the session open after detaching (reattach with `kubectl terminal attach`)")
	attach := &cobra.Command{
		Use:   "attach NAME",
		Short: "Attach to a TerminalSession",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.attachExisting(cmd.Context(), args[0]) },
	}
	attach.Flags().BoolVar(&o.readOnly, "read-only", false, "Watch without typing (enough with the observe grant)")
	for _, c := range []*cobra.Command{cmd, attach} {
		c.Flags().DurationVar(&o.reconnectTimeout, "reconnect-timeout", 2*time.Minute,
			"How long to keep reconnecting after the connection drops while the session runs (0: do not reconnect)")
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the TerminalSessions you may see",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.list(cmd.Context()) },
	}
	ls.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List sessions in all namespaces")
	closeCmd := &cobra.Command{
		Use:   "close NAME",
		Short: "Close (delete) a TerminalSession",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.close(cmd.Context(), args[0]) },
	}
	cmd.SetVersionTemplate("kubectl-terminal {{.Version}}\n")
	cmd.AddCommand(attach, ls, closeCmd, o.uiCommand(), o.replayCommand())
	return cmd
}

type options struct {
	flags         *genericclioptions.ConfigFlags
	streams       genericclioptions.IOStreams
	container     string
	keep          bool
	readOnly      bool
	allNamespaces bool
	// reconnectTimeout bounds reconnecting after a dropped connection.
	reconnectTimeout time.Duration
}

type clients struct {
	cfg       *rest.Config
	kube      kubernetes.Interface
	sessions  clientset.Interface
	namespace string
}

func (o *options) clients() (*clients, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sessions, err := clientset.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{cfg: cfg, kube: kube, sessions: sessions, namespace: ns}, nil
}

// open creates a session on target, attaches, and closes it on exit
// unless --keep.
func (o *options) open(ctx context.Context, target string, command []string) error {
	c, err := o.clients()
	if err != nil {
		return err
	}
	pod, err := resolvePod(ctx, c, target)
	if err != nil {
		return err
	}
	tty := term.TTY{In: o.streams.In, Out: o.streams.Out, Raw: true}
	s := &v1alpha1.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod + "-", Namespace: c.namespace},
		Spec:       v1alpha1.TerminalSessionSpec{Target: v1alpha1.TerminalTarget{Pod: pod, Container: o.container}, Command: command},
	}
	if sz := tty.GetSize(); sz != nil {
		// The right size from the first byte.
		s.Spec.Size = &v1alpha1.TerminalSize{Cols: int32(sz.Width), Rows: int32(sz.Height)}
	}
	created, err := c.sessions.TerminalV1alpha1().TerminalSessions(c.namespace).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(o.streams.ErrOut, "Session %s kept open after you leave: kubectl terminal attach %s\n", created.Name, created.Name)
	} else {
		defer func() {
			_ = c.sessions.TerminalV1alpha1().TerminalSessions(c.namespace).Delete(context.WithoutCancel(ctx), created.Name, metav1.DeleteOptions{})
		}()
	}
	return o.attach(ctx, c, created.Name, created.UID, true)
}

func (o *options) attachExisting(ctx context.Context, name string) error {
	c, err := o.clients()
	if err != nil {
		return err
	}
	s, err := c.sessions.TerminalV1alpha1().TerminalSessions(c.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return o.attach(ctx, c, name, s.UID, !o.readOnly)
}

// resolvePod turns POD, pod/NAME or deployment/NAME into a pod name; a
// Deployment gives its oldest ready pod, as kubectl exec picks one.
func resolvePod(ctx context.Context, c *clients, target string) (string, error) {
	kind, name, found := strings.Cut(target, "/")
	if !found {
		return target, nil
	}
	switch strings.ToLower(kind) {
	case "pod", "pods", "po":
		return name, nil
	case "deployment", "deployments", "deploy":
	default:
		return "", fmt.Errorf("cannot open a terminal in %q: use a pod, pod/NAME or deployment/NAME", target)
	}
	d, err := c.kube.AppsV1().Deployments(c.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return "", err
	}
	pods, err := c.kube.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "", err
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return "", fmt.Errorf("deployment %q has no ready pod", name)
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].CreationTimestamp.Before(&ready[j].CreationTimestamp) })
	return ready[0].Name, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (o *options) list(ctx context.Context) error {
	c, err := o.clients()
	if err != nil {
		return err
	}
	ns := c.namespace
	if o.allNamespaces {
		ns = ""
	}
	l, err := c.sessions.TerminalV1alpha1().TerminalSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(l.Items) == 0 {
		// As kubectl get says it, on stderr.
		if o.allNamespaces {
			fmt.Fprintln(o.streams.ErrOut, "No resources found")
		} else {
			fmt.Fprintf(o.streams.ErrOut, "No resources found in %s namespace.\n", ns)
		}
		return nil
	}
	w := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
	if o.allNamespaces {
		fmt.Fprint(w, "NAMESPACE\t")
	}
	fmt.Fprintln(w, "NAME\tPOD\tCONTAINER\tOWNER\tPHASE\tIDLE\tAGE")
	now := time.Now()
	for _, s := range l.Items {
		owner, idle := "", "<none>"
		if s.Status.Owner != nil {
			owner = printable(s.Status.Owner.Username)
		}
		if s.Status.LastActivityTime != nil && s.Status.Phase == v1alpha1.TerminalSessionRunning {
			idle = duration.HumanDuration(now.Sub(s.Status.LastActivityTime.Time))
		}
		if o.allNamespaces {
			fmt.Fprintf(w, "%s\t", s.Namespace)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec.Target.Pod, s.Spec.Target.Container, owner,
			printable(string(s.Status.Phase)), idle, duration.HumanDuration(now.Sub(s.CreationTimestamp.Time)))
	}
	return w.Flush()
}

func (o *options) close(ctx context.Context, name string) error {
	c, err := o.clients()
	if err != nil {
		return err
	}
	if err := c.sessions.TerminalV1alpha1().TerminalSessions(c.namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "terminalsession.terminal.meshery.io/%s closed\n", name)
	return nil
}

// Main runs the plugin and exits with the remote process's exit code, or
// 1 with kubectl's one-line error.
func Main() {
	// client-go logs every broken stream it sees. The plugin reports what
	// matters itself, and a log line would garble a raw-mode terminal.
	logFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(logFlags)
	_ = logFlags.Set("logtostderr", "false")
	_ = logFlags.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
	cmd := NewCommand(genericclioptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	err := cmd.Execute()
	var exitErr utilexec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		os.Exit(exitErr.ExitStatus())
	}
	if err != nil {
		cmdutil.CheckErr(printableError(err)) // "Error from server (Forbidden): ...", exit 1
	}
}
