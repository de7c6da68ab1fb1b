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

package validation

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

func validSession() *terminal.TerminalSession {
	return &terminal.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{Name: "debug-1", Namespace: "dev", ResourceVersion: "1"},
		Spec: terminal.TerminalSessionSpec{
			Target:            terminal.TerminalTarget{Pod: "web-7d9f8-abcde", Container: "app"},
			Command:           []string{"/bin/sh", "-l"},
			TTY:               ptr.To(true),
			Size:              &terminal.TerminalSize{Cols: 80, Rows: 24},
			IdleTimeout:       &metav1.Duration{Duration: 15 * time.Minute},
			MaxDuration:       &metav1.Duration{Duration: 8 * time.Hour},
			DetachGracePeriod: &metav1.Duration{Duration: 5 * time.Minute},
			TTLAfterClosed:    &metav1.Duration{Duration: time.Hour},
		},
		Status: terminal.TerminalSessionStatus{
			Phase: terminal.TerminalSessionPending,
			Owner: &terminal.SessionOwner{Username: "jane", UID: "42", Groups: []string{"dev"}},
		},
	}
}

// wantErr is the part of a field.Error a test pins down: the path the client sees and
// what kind of problem it is.
type wantErr struct {
	field string
	typ   field.ErrorType
}

func checkErrors(t *testing.T, errs field.ErrorList, want []wantErr) {
	t.Helper()
	var got []wantErr
	for _, e := range errs {
		got = append(got, wantErr{e.Field, e.Type})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got errors %v, want %v\nfull errors: %v", got, want, errs.ToAggregate())
	}
}

func TestValidateTerminalSession(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*terminal.TerminalSession)
		want   []wantErr
	}{
		{name: "valid", mutate: func(*terminal.TerminalSession) {}},
		{name: "minimal spec is valid", mutate: func(s *terminal.TerminalSession) {
			s.Spec = terminal.TerminalSessionSpec{Target: terminal.TerminalTarget{Pod: "p"}}
		}},
		{name: "missing pod", mutate: func(s *terminal.TerminalSession) { s.Spec.Target.Pod = "" },
			want: []wantErr{{"spec.target.pod", field.ErrorTypeRequired}}},
		{name: "pod name not a DNS subdomain", mutate: func(s *terminal.TerminalSession) { s.Spec.Target.Pod = "Web_1" },
			want: []wantErr{{"spec.target.pod", field.ErrorTypeInvalid}}},
		{name: "pod name may contain dots", mutate: func(s *terminal.TerminalSession) { s.Spec.Target.Pod = "web.v2-0" }},
		{name: "container name not a DNS label", mutate: func(s *terminal.TerminalSession) { s.Spec.Target.Container = "app.v2" },
			want: []wantErr{{"spec.target.container", field.ErrorTypeInvalid}}},
		{name: "empty container means default", mutate: func(s *terminal.TerminalSession) { s.Spec.Target.Container = "" }},
		{name: "empty command means default shell", mutate: func(s *terminal.TerminalSession) { s.Spec.Command = nil }},
		{name: "empty command entries", mutate: func(s *terminal.TerminalSession) { s.Spec.Command = []string{"ls", "", "-l", ""} },
			want: []wantErr{{"spec.command[1]", field.ErrorTypeRequired}, {"spec.command[3]", field.ErrorTypeRequired}}},
		{name: "argv at the limit", mutate: func(s *terminal.TerminalSession) {
			s.Spec.Command = strings.Split(strings.Repeat("x ", MaxCommandArgs-1)+"x", " ")
		}},
		{name: "argv over the limit", mutate: func(s *terminal.TerminalSession) {
			s.Spec.Command = make([]string, MaxCommandArgs+1)
		}, want: []wantErr{{"spec.command", field.ErrorTypeTooMany}}},
		{name: "zero size", mutate: func(s *terminal.TerminalSession) { s.Spec.Size = &terminal.TerminalSize{} },
			want: []wantErr{{"spec.size.cols", field.ErrorTypeInvalid}, {"spec.size.rows", field.ErrorTypeInvalid}}},
		{name: "negative cols", mutate: func(s *terminal.TerminalSession) { s.Spec.Size.Cols = -80 },
			want: []wantErr{{"spec.size.cols", field.ErrorTypeInvalid}}},
		{name: "huge rows", mutate: func(s *terminal.TerminalSession) { s.Spec.Size.Rows = MaxTerminalDimension + 1 },
			want: []wantErr{{"spec.size.rows", field.ErrorTypeInvalid}}},
		{name: "size bounds are inclusive", mutate: func(s *terminal.TerminalSession) {
			s.Spec.Size = &terminal.TerminalSize{Cols: MinTerminalDimension, Rows: MaxTerminalDimension}
		}},
		{name: "zero and negative timeouts", mutate: func(s *terminal.TerminalSession) {
			s.Spec.IdleTimeout = &metav1.Duration{}
			s.Spec.MaxDuration = &metav1.Duration{Duration: -time.Second}
			s.Spec.DetachGracePeriod = &metav1.Duration{}
		}, want: []wantErr{
			{"spec.idleTimeout", field.ErrorTypeInvalid},
			{"spec.maxDuration", field.ErrorTypeInvalid},
			{"spec.detachGracePeriod", field.ErrorTypeInvalid},
		}},
		{name: "zero ttlAfterClosed deletes at once", mutate: func(s *terminal.TerminalSession) { s.Spec.TTLAfterClosed = &metav1.Duration{} }},
		{name: "negative ttlAfterClosed", mutate: func(s *terminal.TerminalSession) {
			s.Spec.TTLAfterClosed = &metav1.Duration{Duration: -time.Minute}
		}, want: []wantErr{{"spec.ttlAfterClosed", field.ErrorTypeInvalid}}},
		{name: "bad session name", mutate: func(s *terminal.TerminalSession) { s.Name = "Debug_1" },
			want: []wantErr{{"metadata.name", field.ErrorTypeInvalid}}},
		{name: "missing namespace", mutate: func(s *terminal.TerminalSession) { s.Namespace = "" },
			want: []wantErr{{"metadata.namespace", field.ErrorTypeRequired}}},
		{name: "errors accumulate", mutate: func(s *terminal.TerminalSession) {
			s.Spec.Target.Pod = ""
			s.Spec.Size.Cols = 0
		}, want: []wantErr{{"spec.target.pod", field.ErrorTypeRequired}, {"spec.size.cols", field.ErrorTypeInvalid}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validSession()
			tc.mutate(s)
			checkErrors(t, ValidateTerminalSession(s), tc.want)
		})
	}
}

func TestValidateTerminalSessionErrorMessages(t *testing.T) {
	s := validSession()
	s.Spec.IdleTimeout = &metav1.Duration{Duration: -time.Minute}
	s.Spec.Size.Cols = 0
	got := ValidateTerminalSession(s).ToAggregate().Error()
	for _, want := range []string{
		`spec.size.cols: Invalid value: 0: must be between 1 and 10000, inclusive`,
		`spec.idleTimeout: Invalid value: "-1m0s": must be greater than zero`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q does not contain %q", got, want)
		}
	}
}

func TestValidateTerminalSessionUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*terminal.TerminalSession)
		want   []wantErr
	}{
		{name: "labels may change", mutate: func(s *terminal.TerminalSession) { s.Labels = map[string]string{"team": "a"} }},
		{name: "target is immutable", mutate: func(s *terminal.TerminalSession) { s.Spec.Target.Pod = "other" },
			want: []wantErr{{"spec", field.ErrorTypeForbidden}}},
		{name: "command is immutable", mutate: func(s *terminal.TerminalSession) { s.Spec.Command = append(s.Spec.Command, "-x") },
			want: []wantErr{{"spec", field.ErrorTypeForbidden}}},
		{name: "size is immutable", mutate: func(s *terminal.TerminalSession) { s.Spec.Size.Cols = 132 },
			want: []wantErr{{"spec", field.ErrorTypeForbidden}}},
		{name: "timeouts are immutable", mutate: func(s *terminal.TerminalSession) { s.Spec.IdleTimeout = nil },
			want: []wantErr{{"spec", field.ErrorTypeForbidden}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldSession := validSession()
			newSession := validSession()
			tc.mutate(newSession)
			errs := ValidateTerminalSessionUpdate(newSession, oldSession)
			checkErrors(t, errs, tc.want)
			for _, e := range errs {
				if e.Detail != "field is immutable" {
					t.Errorf("detail = %q, want %q", e.Detail, "field is immutable")
				}
			}
		})
	}
}

func TestValidateTerminalSessionStatusUpdate(t *testing.T) {
	closed := func(s *terminal.TerminalSession) {
		s.Status.Phase = terminal.TerminalSessionClosed
		s.Status.Reason = "Exited"
		s.Status.ExitCode = ptr.To[int32](0)
	}
	cases := []struct {
		name   string
		old    func(*terminal.TerminalSession)
		mutate func(*terminal.TerminalSession)
		want   []wantErr
	}{
		{name: "pending to running", mutate: func(s *terminal.TerminalSession) {
			s.Status.Phase = terminal.TerminalSessionRunning
			s.Status.Subjects = "terminal.0b7b6d1e"
			s.Status.StartedAt = ptr.To(metav1.Now())
			s.Status.Viewers = 2
			s.Status.ObservedGeneration = 1
			s.Status.Conditions = []metav1.Condition{{
				Type: "Bridged", Status: metav1.ConditionTrue, Reason: "ExecStarted", LastTransitionTime: metav1.Now(),
			}}
		}},
		{name: "running to closed with exit code", mutate: closed},
		{name: "failed with exit code", mutate: func(s *terminal.TerminalSession) {
			s.Status.Phase = terminal.TerminalSessionFailed
			s.Status.Reason = "TargetGone"
			s.Status.ExitCode = ptr.To[int32](137)
		}},
		{name: "unknown phase", mutate: func(s *terminal.TerminalSession) { s.Status.Phase = "Paused" },
			want: []wantErr{{"status.phase", field.ErrorTypeNotSupported}}},
		{name: "empty phase", mutate: func(s *terminal.TerminalSession) { s.Status.Phase = "" },
			want: []wantErr{{"status.phase", field.ErrorTypeNotSupported}}},
		{name: "closed is final", old: closed, mutate: func(s *terminal.TerminalSession) {
			s.Status.Phase = terminal.TerminalSessionRunning
			s.Status.ExitCode = nil
		}, want: []wantErr{{"status.phase", field.ErrorTypeForbidden}}},
		{name: "closed may turn into closed", old: closed, mutate: func(s *terminal.TerminalSession) {
			closed(s)
			s.Status.Message = "process exited"
		}},
		{name: "exit code while running", mutate: func(s *terminal.TerminalSession) {
			s.Status.Phase = terminal.TerminalSessionRunning
			s.Status.ExitCode = ptr.To[int32](0)
		}, want: []wantErr{{"status.exitCode", field.ErrorTypeForbidden}}},
		{name: "owner is immutable", mutate: func(s *terminal.TerminalSession) { s.Status.Owner.Username = "mallory" },
			want: []wantErr{{"status.owner", field.ErrorTypeForbidden}}},
		{name: "owner groups are immutable", mutate: func(s *terminal.TerminalSession) {
			s.Status.Owner.Groups = append(s.Status.Owner.Groups, "system:masters")
		}, want: []wantErr{{"status.owner", field.ErrorTypeForbidden}}},
		{name: "owner cannot be removed", mutate: func(s *terminal.TerminalSession) { s.Status.Owner = nil },
			want: []wantErr{{"status.owner", field.ErrorTypeForbidden}}},
		{name: "owner needs a username", old: func(s *terminal.TerminalSession) { s.Status.Owner = nil },
			mutate: func(s *terminal.TerminalSession) { s.Status.Owner = &terminal.SessionOwner{UID: "1"} },
			want:   []wantErr{{"status.owner.username", field.ErrorTypeRequired}}},
		{name: "reason must be CamelCase", mutate: func(s *terminal.TerminalSession) { s.Status.Reason = "idle timeout" },
			want: []wantErr{{"status.reason", field.ErrorTypeInvalid}}},
		{name: "negative counters", mutate: func(s *terminal.TerminalSession) {
			s.Status.Viewers = -1
			s.Status.ObservedGeneration = -1
		}, want: []wantErr{{"status.viewers", field.ErrorTypeInvalid}, {"status.observedGeneration", field.ErrorTypeInvalid}}},
		{name: "message too long", mutate: func(s *terminal.TerminalSession) { s.Status.Message = strings.Repeat("x", 32*1024+1) },
			want: []wantErr{{"status.message", field.ErrorTypeTooLong}}},
		{name: "conditions are validated", mutate: func(s *terminal.TerminalSession) {
			s.Status.Conditions = []metav1.Condition{{Type: "Bridged", Status: "Maybe", Reason: "X", LastTransitionTime: metav1.Now()}}
		}, want: []wantErr{{"status.conditions[0].status", field.ErrorTypeNotSupported}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldSession := validSession()
			if tc.old != nil {
				tc.old(oldSession)
			}
			newSession := oldSession.DeepCopy()
			tc.mutate(newSession)
			checkErrors(t, ValidateTerminalSessionStatusUpdate(newSession, oldSession), tc.want)
		})
	}
}
