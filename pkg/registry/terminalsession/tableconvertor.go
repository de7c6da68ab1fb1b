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
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

var objectMetaDescriptions = metav1.ObjectMeta{}.SwaggerDoc()

// columnDefinitions are the columns of `kubectl get terminalsessions`. Priority 1 columns
// appear only with -o wide. kubectl shows the descriptions in its column help, so they
// say what a value means to someone looking at a session, not where it is stored.
var columnDefinitions = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: objectMetaDescriptions["name"]},
	{Name: "Pod", Type: "string", Description: "The pod the session's shell runs in."},
	{Name: "Container", Type: "string", Description: "The container the session's shell runs in; <default> means the pod's default container."},
	{Name: "Owner", Type: "string", Description: "The user who opened the session. The shell runs with this user's identity, and only this user may attach without an explicit grant."},
	{Name: "Phase", Type: "string", Description: "Where the session is in its life: Pending (process not started yet), Running, Closed (ended normally) or Failed."},
	{Name: "Age", Type: "string", Description: objectMetaDescriptions["creationTimestamp"]},
	{Name: "Idle", Type: "string", Description: "Time since a viewer last typed or the process last wrote output, as the server last recorded it (at most every few seconds); <none> before any activity."},
	{Name: "Reason", Type: "string", Priority: 1, Description: "Why the session is in its phase, as a CamelCase word such as Exited, Deleted, IdleTimeout or TargetGone."},
	{Name: "Exit Code", Type: "string", Priority: 1, Description: "The exit status of the session's process, once it has exited."},
}

// tableConvertor renders TerminalSessions for `kubectl get`. now is a field so that
// tests can pin the relative times in the Age and Idle columns.
type tableConvertor struct {
	now func() time.Time
}

// NewTableConvertor returns the table convertor for TerminalSessions.
func NewTableConvertor() rest.TableConvertor {
	return tableConvertor{now: time.Now}
}

// ConvertToTable implements rest.TableConvertor for a TerminalSession or a list of them.
func (c tableConvertor) ConvertToTable(ctx context.Context, obj runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	noHeaders := false
	switch opts := tableOptions.(type) {
	case nil:
	case *metav1.TableOptions:
		noHeaders = opts != nil && opts.NoHeaders
	default:
		return nil, fmt.Errorf("unrecognized type %T for table options, can't display tabular output", tableOptions)
	}

	now := c.now()
	table := &metav1.Table{}
	switch t := obj.(type) {
	case *terminal.TerminalSession:
		table.Rows = []metav1.TableRow{c.row(t, now)}
	case *terminal.TerminalSessionList:
		table.Rows = make([]metav1.TableRow, 0, len(t.Items))
		for i := range t.Items {
			table.Rows = append(table.Rows, c.row(&t.Items[i], now))
		}
	default:
		return nil, fmt.Errorf("cannot convert %T to a TerminalSession table", obj)
	}

	if l, err := meta.ListAccessor(obj); err == nil {
		table.ResourceVersion = l.GetResourceVersion()
		table.Continue = l.GetContinue()
		table.RemainingItemCount = l.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(obj); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	if !noHeaders {
		table.ColumnDefinitions = columnDefinitions
	}
	return table, nil
}

func (c tableConvertor) row(s *terminal.TerminalSession, now time.Time) metav1.TableRow {
	container := s.Spec.Target.Container
	if container == "" {
		container = "<default>"
	}
	owner := "<none>"
	if s.Status.Owner != nil && s.Status.Owner.Username != "" {
		owner = s.Status.Owner.Username
	}
	phase := string(s.Status.Phase)
	if phase == "" {
		phase = "<unknown>"
	}
	idle := "<none>"
	if s.Status.LastActivityTime != nil {
		idle = since(s.Status.LastActivityTime.Time, now)
	}
	reason := s.Status.Reason
	if reason == "" {
		reason = "<none>"
	}
	exitCode := "<none>"
	if s.Status.ExitCode != nil {
		exitCode = strconv.Itoa(int(*s.Status.ExitCode))
	}
	return metav1.TableRow{
		Cells: []interface{}{
			s.Name,
			s.Spec.Target.Pod,
			container,
			owner,
			phase,
			since(s.CreationTimestamp.Time, now),
			idle,
			reason,
			exitCode,
		},
		Object: runtime.RawExtension{Object: s},
	}
}

// since renders the time from t to now the way kubectl renders ages.
func since(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}
