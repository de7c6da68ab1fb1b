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
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

var tableNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testConvertor() tableConvertor {
	return tableConvertor{now: func() time.Time { return tableNow }}
}

func TestTableColumns(t *testing.T) {
	table, err := testConvertor().ConvertToTable(context.Background(), newSession(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names, wide []string
	for _, c := range table.ColumnDefinitions {
		if c.Description == "" {
			t.Errorf("column %q has no description", c.Name)
		}
		if c.Priority == 0 {
			names = append(names, c.Name)
		} else {
			wide = append(wide, c.Name)
		}
	}
	if want := []string{"Name", "Pod", "Container", "Owner", "Phase", "Age", "Idle"}; !reflect.DeepEqual(names, want) {
		t.Errorf("default columns = %v, want %v", names, want)
	}
	if want := []string{"Reason", "Exit Code"}; !reflect.DeepEqual(wide, want) {
		t.Errorf("wide-only columns = %v, want %v", wide, want)
	}
	if table.ColumnDefinitions[0].Format != "name" {
		t.Error("the Name column must have format name, so kubectl -o name works")
	}
}

func TestTableRows(t *testing.T) {
	closed := newSession()
	closed.Name = "closed"
	closed.ResourceVersion = "12"
	closed.CreationTimestamp = metav1.NewTime(tableNow.Add(-3 * time.Hour))
	closed.Status = terminal.TerminalSessionStatus{
		Phase:            terminal.TerminalSessionClosed,
		Owner:            &terminal.SessionOwner{Username: "jane"},
		LastActivityTime: ptr.To(metav1.NewTime(tableNow.Add(-90 * time.Second))),
		Reason:           "Exited",
		ExitCode:         ptr.To[int32](130),
	}

	pending := newSession()
	pending.Name = "pending"
	pending.Spec.Target.Container = ""
	pending.CreationTimestamp = metav1.NewTime(tableNow.Add(-5 * time.Second))
	pending.Status.Phase = terminal.TerminalSessionPending

	cases := []struct {
		name string
		in   *terminal.TerminalSession
		want []interface{}
	}{
		{"closed", closed, []interface{}{"closed", "web-0", "app", "jane", "Closed", "3h", "90s", "Exited", "130"}},
		{"pending", pending, []interface{}{"pending", "web-0", "<default>", "<none>", "Pending", "5s", "<none>", "<none>", "<none>"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table, err := testConvertor().ConvertToTable(context.Background(), tc.in, &metav1.TableOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(table.Rows) != 1 {
				t.Fatalf("got %d rows, want 1", len(table.Rows))
			}
			row := table.Rows[0]
			if !reflect.DeepEqual(row.Cells, tc.want) {
				t.Errorf("cells = %#v, want %#v", row.Cells, tc.want)
			}
			if len(row.Cells) != len(table.ColumnDefinitions) {
				t.Errorf("%d cells for %d columns", len(row.Cells), len(table.ColumnDefinitions))
			}
			// The handler turns the row object into metadata or the full object, as the
			// client asked; kubectl needs it for --show-labels and -L.
			if row.Object.Object != tc.in {
				t.Error("row does not carry its object")
			}
			if table.ResourceVersion != tc.in.ResourceVersion {
				t.Errorf("resourceVersion = %q, want %q", table.ResourceVersion, tc.in.ResourceVersion)
			}
		})
	}
}

func TestTableList(t *testing.T) {
	a, b := newSession(), newSession()
	a.Name, b.Name = "a", "b"
	list := &terminal.TerminalSessionList{
		ListMeta: metav1.ListMeta{ResourceVersion: "77", Continue: "next", RemainingItemCount: ptr.To[int64](3)},
		Items:    []terminal.TerminalSession{*a, *b},
	}
	table, err := testConvertor().ConvertToTable(context.Background(), list, &metav1.TableOptions{NoHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(table.ColumnDefinitions) != 0 {
		t.Error("column definitions returned despite noHeaders")
	}
	if len(table.Rows) != 2 || table.Rows[0].Cells[0] != "a" || table.Rows[1].Cells[0] != "b" {
		t.Errorf("rows = %v, want a and b in order", table.Rows)
	}
	if table.ResourceVersion != "77" || table.Continue != "next" || *table.RemainingItemCount != 3 {
		t.Errorf("list metadata not carried over: %+v", table.ListMeta)
	}

	empty, err := testConvertor().ConvertToTable(context.Background(), &terminal.TerminalSessionList{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(empty.Rows) != 0 {
		t.Errorf("empty list rows = %#v, want none", empty.Rows)
	}
}

func TestTableErrors(t *testing.T) {
	if _, err := testConvertor().ConvertToTable(context.Background(), &metav1.Status{}, nil); err == nil {
		t.Error("converted an object that is not a TerminalSession")
	}
	if _, err := testConvertor().ConvertToTable(context.Background(), newSession(), &metav1.ListOptions{}); err == nil {
		t.Error("accepted table options of the wrong type")
	}
}
