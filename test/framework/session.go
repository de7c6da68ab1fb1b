package framework

import (
	"context"
	"fmt"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned/scheme"
)

// NewSession is a session on pod, labelled as a test's (e2e=true), with the
// server's defaults for everything else.
func NewSession(ns, name, pod string) *v1alpha1.TerminalSession {
	return &v1alpha1.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"e2e": "true"}},
		Spec:       v1alpha1.TerminalSessionSpec{Target: v1alpha1.TerminalTarget{Pod: pod}},
	}
}

// WaitPhase polls the session until it is in phase, for at most timeout,
// and returns it as last read.
func WaitPhase(ctx context.Context, c clientset.Interface, ns, name string, phase v1alpha1.TerminalSessionPhase, timeout time.Duration) (*v1alpha1.TerminalSession, error) {
	var got *v1alpha1.TerminalSession
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.TerminalV1alpha1().TerminalSessions(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // a moment's error: the deadline decides
		}
		got = s
		return s.Status.Phase == phase, nil
	})
	if err != nil {
		last := "never read"
		if got != nil {
			last = fmt.Sprintf("%s (%s: %s)", got.Status.Phase, got.Status.Reason, got.Status.Message)
		}
		return got, fmt.Errorf("session %s/%s not %s within %s, last %s", ns, name, phase, timeout, last)
	}
	return got, nil
}

// AttachURL is the session's attach subresource with the options o.
func AttachURL(c clientset.Interface, ns, name string, o *v1alpha1.TerminalSessionAttachOptions) *url.URL {
	return c.TerminalV1alpha1().RESTClient().Post().Namespace(ns).Resource("terminalsessions").
		Name(name).SubResource("attach").VersionedParams(o, scheme.ParameterCodec).URL()
}

// Executor streams u (an attach or a pods/exec URL) over WebSocket or SPDY,
// as client-go's executors do.
func Executor(cfg *rest.Config, u *url.URL, websocket bool) (remotecommand.Executor, error) {
	if websocket {
		return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	}
	return remotecommand.NewSPDYExecutor(cfg, "POST", u)
}

// FallbackExecutor is how kubectl connects: WebSocket, else SPDY.
func FallbackExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := Executor(cfg, u, true)
	if err != nil {
		return nil, err
	}
	spdy, err := Executor(cfg, u, false)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
}

// The local node's images (hack/build-images.sh), which it never pulls.
const (
	BusyboxImage = "terminal.local/busybox:1"
	BashImage    = "terminal.local/bash:1"
)

// SleepingContainer is a busybox container that runs until it is stopped.
func SleepingContainer(name string) corev1.Container {
	return corev1.Container{Name: name, Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sleep", "infinity"}}
}
