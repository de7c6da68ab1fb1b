/*
Copyright The Meshery Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package terminalsession

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/bridge"
)

// DefaultContainerAnnotation names the container that `kubectl exec` (and so a session
// without spec.target.container) uses in a pod with several.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// TargetChecker runs the checks that must pass before a session is stored: that the
// requesting user may exec into the target, and that the target can take a terminal.
// It is an interface so that the registry's tests can do without a cluster.
type TargetChecker interface {
	// Check authorizes u to create pods/exec on session.Spec.Target.Pod in
	// session.Namespace, then checks the pod and resolves the container. It returns the
	// container the session runs in, or an API status error to return to the client
	// as it is (403 refused, 422 bad target, 500 the cluster could not be asked).
	Check(ctx context.Context, u user.Info, session *terminal.TerminalSession) (container string, err error)
}

// TargetCheckerFunc adapts a function to TargetChecker.
type TargetCheckerFunc func(ctx context.Context, u user.Info, session *terminal.TerminalSession) (string, error)

// Check calls f.
func (f TargetCheckerFunc) Check(ctx context.Context, u user.Info, session *terminal.TerminalSession) (string, error) {
	return f(ctx, u, session)
}

// NewTargetChecker returns the TargetChecker that asks kube-apiserver through client,
// which must act as the server's own identity: it needs create subjectaccessreviews and
// get pods, and nothing it reads is shown to a user before that user is authorized.
func NewTargetChecker(client kubernetes.Interface) TargetChecker {
	return &kubeTargetChecker{client: client}
}

type kubeTargetChecker struct {
	client kubernetes.Interface
}

var (
	targetPath    = field.NewPath("spec", "target")
	podPath       = targetPath.Child("pod")
	containerPath = targetPath.Child("container")
)

func (c *kubeTargetChecker) Check(ctx context.Context, u user.Info, session *terminal.TerminalSession) (string, error) {
	// Authorization first, so that a user who may not exec into the namespace learns
	// nothing about which pods exist or what runs in them.
	if err := c.authorize(ctx, u, session); err != nil {
		return "", err
	}
	target := session.Spec.Target
	pod, err := c.client.CoreV1().Pods(session.Namespace).Get(ctx, target.Pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", invalid(session, podNotFound(target.Pod, session.Namespace))
	}
	if err != nil {
		return "", apierrors.NewInternalError(fmt.Errorf("looking up target pod %q in namespace %q: %w", target.Pod, session.Namespace, err))
	}
	if ferr := checkPodRunning(pod); ferr != nil {
		return "", invalid(session, ferr)
	}
	container, ferr := resolveContainer(pod, target.Container)
	if ferr != nil {
		return "", invalid(session, ferr)
	}
	if ferr := checkContainerRunning(pod, container); ferr != nil {
		return "", invalid(session, ferr)
	}
	return container, nil
}

// authorize asks kube-apiserver whether u may do what `kubectl exec` into the target
// would do: a terminal must never grant more than that. The review carries the user's
// groups, extra and UID as authenticated, so that the cluster's authorizers (RBAC,
// webhooks) decide exactly as they would for the user's own exec.
func (c *kubeTargetChecker) authorize(ctx context.Context, u user.Info, session *terminal.TerminalSession) error {
	if u == nil {
		return apierrors.NewForbidden(terminal.Resource("terminalsessions"), session.Name,
			fmt.Errorf("the request has no authenticated user to check pods/exec permission for"))
	}
	pod, namespace := session.Spec.Target.Pod, session.Namespace
	// The identity the bridge will impersonate, which can be less than the
	// request's (never system:masters; a ServiceAccount by name, its groups
	// following from it): asking for that one means a session that passes
	// this check can run.
	imp := bridge.Impersonation(u.GetName(), u.GetUID(), u.GetGroups(), u.GetExtra())
	groups := imp.Groups
	if _, _, err := serviceaccount.SplitUsername(imp.UserName); err == nil {
		groups = u.GetGroups() // a ServiceAccount's, which impersonating it by name gives too
	}
	var extra map[string]authorizationv1.ExtraValue
	if len(imp.Extra) > 0 {
		extra = make(map[string]authorizationv1.ExtraValue, len(imp.Extra))
		for k, v := range imp.Extra {
			extra[k] = append(authorizationv1.ExtraValue(nil), v...)
		}
	}
	review := &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   imp.UserName,
			Groups: append([]string(nil), groups...),
			Extra:  extra,
			UID:    imp.UID,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace:   namespace,
				Verb:        "create",
				Group:       "",
				Resource:    "pods",
				Subresource: "exec",
				Name:        pod,
			},
		},
	}
	result, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("checking whether user %q may create pods/exec on pod %q in namespace %q: %w",
			u.GetName(), pod, namespace, err))
	}
	if result.Status.Allowed {
		return nil
	}
	msg := fmt.Sprintf("user %q cannot create pods/exec on pod %q in namespace %q: opening a terminal needs the same permission as kubectl exec",
		u.GetName(), pod, namespace)
	if result.Status.Reason != "" {
		msg += " (" + result.Status.Reason + ")"
	}
	if slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		msg += "; sessions never run as system:masters: grant pods/exec through RBAC"
	}
	return apierrors.NewForbidden(terminal.Resource("terminalsessions"), session.Name, fmt.Errorf("%s", msg))
}

func invalid(session *terminal.TerminalSession, ferr *field.Error) error {
	return apierrors.NewInvalid(terminal.Kind("TerminalSession"), session.Name, field.ErrorList{ferr})
}

// podNotFound is a 422 on the field rather than a 404: the request's URL (the sessions
// collection) exists, and a 404 on a POST reads as "no such resource or namespace". The
// cause type, FieldValueNotFound, still says what is missing.
func podNotFound(pod, namespace string) *field.Error {
	return &field.Error{
		Type:     field.ErrorTypeNotFound,
		Field:    podPath.String(),
		BadValue: field.OmitValueType{},
		Detail:   fmt.Sprintf("pod %q in namespace %q", pod, namespace),
	}
}

// checkPodRunning refuses pods that cannot run a command now: not yet started,
// finished, or on their way out (a session there would close at once as TargetGone).
func checkPodRunning(pod *corev1.Pod) *field.Error {
	if pod.DeletionTimestamp != nil {
		return field.Invalid(podPath, pod.Name, "pod is being deleted")
	}
	if pod.Status.Phase != corev1.PodRunning {
		phase := string(pod.Status.Phase)
		if phase == "" {
			phase = "not started"
		}
		return field.Invalid(podPath, pod.Name, fmt.Sprintf("pod is %s, not Running: a terminal needs a running pod", phase))
	}
	return nil
}

// resolveContainer returns the container a session runs in: the one requested, else the
// one the default-container annotation names, else the pod's only container, as
// `kubectl exec` chooses. Several containers and no choice is an error that lists them,
// rather than a guess: a shell in the wrong container is worse than none.
//
// Regular containers qualify, and so do sidecars (init containers with restartPolicy
// Always), which run for the pod's whole life; other init containers have finished
// before the pod is Running, and ephemeral containers are for `kubectl debug`/attach.
// Defaults come from regular containers only, as kubectl's do.
func resolveContainer(pod *corev1.Pod, requested string) (string, *field.Error) {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if requested != "" {
		candidates := append([]string(nil), names...)
		for _, c := range pod.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				candidates = append(candidates, c.Name)
			}
		}
		for _, name := range candidates {
			if name == requested {
				return requested, nil
			}
		}
		return "", field.NotSupported(containerPath, requested, candidates)
	}

	annotated := pod.Annotations[DefaultContainerAnnotation]
	if annotated != "" {
		for _, name := range names {
			if name == annotated {
				return name, nil
			}
		}
	}
	if len(names) == 1 {
		return names[0], nil
	}
	detail := fmt.Sprintf("pod %q has %d containers (%s); choose one with spec.target.container",
		pod.Name, len(names), strings.Join(names, ", "))
	if annotated != "" {
		detail += fmt.Sprintf(" (its %s annotation names %q, which it does not have)", DefaultContainerAnnotation, annotated)
	}
	return "", field.Required(containerPath, detail)
}

// checkContainerRunning refuses a container whose status says it is not running (crash
// looping, terminated), which would otherwise fail later in the exec with a vaguer
// message. A container without a status yet is let through: the exec will tell.
func checkContainerRunning(pod *corev1.Pod, container string) *field.Error {
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.ContainerStatuses...), pod.Status.InitContainerStatuses...)
	for _, st := range statuses {
		if st.Name != container {
			continue
		}
		switch {
		case st.State.Running != nil:
			return nil
		case st.State.Waiting != nil:
			return field.Invalid(containerPath, container, "container is not running (waiting"+withReason(st.State.Waiting.Reason)+")")
		case st.State.Terminated != nil:
			return field.Invalid(containerPath, container, fmt.Sprintf("container is not running (terminated%s, exit code %d)",
				withReason(st.State.Terminated.Reason), st.State.Terminated.ExitCode))
		}
		return nil
	}
	return nil
}

func withReason(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}
