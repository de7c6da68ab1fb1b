package bridge

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// updateStatus applies mutate to the current status and writes it, unless
// mutate says there is nothing to write.
func (b *Bridge) updateStatus(ctx context.Context, s *v1alpha1.TerminalSession, mutate func(*v1alpha1.TerminalSessionStatus) bool) (wrote bool) {
	c := b.cfg.Sessions.TerminalV1alpha1().TerminalSessions(s.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := c.Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != s.UID {
			return errors.New("session was replaced")
		}
		if !mutate(&cur.Status) {
			return nil
		}
		_, err = c.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		wrote = err == nil
		return err
	})
	if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
		klog.ErrorS(err, "Updating session status failed", "session", klog.KObj(s))
	}
	return wrote
}

func (b *Bridge) markRunning(ctx context.Context, s *v1alpha1.TerminalSession, command []string) {
	now := metav1.Now()
	s.Status.StartedAt = &now
	b.updateStatus(ctx, s, func(st *v1alpha1.TerminalSessionStatus) bool {
		if st.Phase != v1alpha1.TerminalSessionPending {
			return false
		}
		st.Phase = v1alpha1.TerminalSessionRunning
		st.StartedAt = &now
		st.LastActivityTime = &now
		st.Message = fmt.Sprintf("running %q", command)
		return true
	})
	b.record(s, corev1.EventTypeNormal, "Started", "Exec", "Running %q in container %s of pod %s as %s",
		command, s.Spec.Target.Container, s.Spec.Target.Pod, ptr.Deref(s.Status.Owner, v1alpha1.SessionOwner{}).Username)
}

// markClosed records the end of a session that is still open; false if
// it was closed already (by another replica) or could not be written.
func (b *Bridge) markClosed(ctx context.Context, s *v1alpha1.TerminalSession, ev wire.Event, phase v1alpha1.TerminalSessionPhase) bool {
	now := metav1.Now()
	wrote := b.updateStatus(ctx, s, func(st *v1alpha1.TerminalSessionStatus) bool {
		if st.Phase == v1alpha1.TerminalSessionClosed || st.Phase == v1alpha1.TerminalSessionFailed {
			return false // final
		}
		st.Phase, st.Reason, st.Message, st.ExitCode, st.ClosedAt = phase, ev.Reason, ev.Message, ev.ExitCode, &now
		return true
	})
	eventtype := corev1.EventTypeNormal
	if phase == v1alpha1.TerminalSessionFailed || ev.Reason == v1alpha1.ReasonTargetGone {
		eventtype = corev1.EventTypeWarning
	}
	b.record(s, eventtype, ev.Reason, "Close", "%s", ev.Message)
	return wrote
}
