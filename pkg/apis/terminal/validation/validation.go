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

// Package validation checks TerminalSessions in their internal form. Every error carries
// the field path of the offending value, so that a 422 tells the client exactly what to fix.
package validation

import (
	"regexp"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

const (
	// MaxCommandArgs bounds argv: a command line longer than this is almost certainly a
	// script, which belongs in the container image rather than in an API object.
	MaxCommandArgs = 256
	// MinTerminalDimension and MaxTerminalDimension bound the terminal size. The upper
	// bound is far beyond any real screen but keeps a malicious size from making the
	// process or a viewer allocate an enormous screen buffer.
	MinTerminalDimension = 1
	MaxTerminalDimension = 10000

	// maxReasonLength and maxMessageLength match metav1.Condition's limits, so a reason or
	// message can be copied into a condition unchanged.
	maxReasonLength  = 1024
	maxMessageLength = 32 * 1024

	immutableErrorMsg = apimachineryvalidation.FieldImmutableErrorMsg
)

// supportedPhases lists every valid status.phase, in the order they are reported.
var supportedPhases = []terminal.TerminalSessionPhase{
	terminal.TerminalSessionPending,
	terminal.TerminalSessionRunning,
	terminal.TerminalSessionClosed,
	terminal.TerminalSessionFailed,
}

var reasonRegexp = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// ValidateTerminalSession validates a session being created.
func ValidateTerminalSession(s *terminal.TerminalSession) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&s.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateTerminalSessionSpec(&s.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateTerminalSessionSpec validates a session's spec.
func ValidateTerminalSessionSpec(spec *terminal.TerminalSessionSpec, fldPath *field.Path) field.ErrorList {
	allErrs := validateTarget(&spec.Target, fldPath.Child("target"))
	allErrs = append(allErrs, validateCommand(spec.Command, fldPath.Child("command"))...)
	if spec.Size != nil {
		allErrs = append(allErrs, validateSize(spec.Size, fldPath.Child("size"))...)
	}
	allErrs = append(allErrs, validatePositiveDuration(spec.IdleTimeout, fldPath.Child("idleTimeout"))...)
	allErrs = append(allErrs, validatePositiveDuration(spec.MaxDuration, fldPath.Child("maxDuration"))...)
	allErrs = append(allErrs, validatePositiveDuration(spec.DetachGracePeriod, fldPath.Child("detachGracePeriod"))...)
	allErrs = append(allErrs, validateNonNegativeDuration(spec.TTLAfterClosed, fldPath.Child("ttlAfterClosed"))...)
	return allErrs
}

func validateTarget(target *terminal.TerminalTarget, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	podPath := fldPath.Child("pod")
	if target.Pod == "" {
		allErrs = append(allErrs, field.Required(podPath, "the name of the pod to open the terminal in"))
	} else {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(target.Pod, false) {
			allErrs = append(allErrs, field.Invalid(podPath, target.Pod, msg))
		}
	}
	if target.Container != "" {
		for _, msg := range utilvalidation.IsDNS1123Label(target.Container) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("container"), target.Container, msg))
		}
	}
	return allErrs
}

func validateCommand(command []string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(command) > MaxCommandArgs {
		// One error is enough; listing every empty entry of a runaway argv helps nobody.
		return append(allErrs, field.TooMany(fldPath, len(command), MaxCommandArgs))
	}
	for i, arg := range command {
		if arg == "" {
			allErrs = append(allErrs, field.Required(fldPath.Index(i), "command arguments must not be empty"))
		}
	}
	return allErrs
}

func validateSize(size *terminal.TerminalSize, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	rangeMsg := utilvalidation.InclusiveRangeError(MinTerminalDimension, MaxTerminalDimension)
	if size.Cols < MinTerminalDimension || size.Cols > MaxTerminalDimension {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("cols"), size.Cols, rangeMsg))
	}
	if size.Rows < MinTerminalDimension || size.Rows > MaxTerminalDimension {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("rows"), size.Rows, rangeMsg))
	}
	return allErrs
}

func validatePositiveDuration(d *metav1.Duration, fldPath *field.Path) field.ErrorList {
	if d != nil && d.Duration <= 0 {
		return field.ErrorList{field.Invalid(fldPath, d.Duration.String(), "must be greater than zero")}
	}
	return nil
}

func validateNonNegativeDuration(d *metav1.Duration, fldPath *field.Path) field.ErrorList {
	if d != nil && d.Duration < 0 {
		return field.ErrorList{field.Invalid(fldPath, d.Duration.String(), "must be greater than or equal to zero")}
	}
	return nil
}

// ValidateTerminalSessionUpdate validates an update of the main resource. Metadata is
// validated by the generic registry for every update, so only the spec is checked here.
func ValidateTerminalSessionUpdate(newSession, oldSession *terminal.TerminalSession) field.ErrorList {
	var allErrs field.ErrorList
	// The spec describes a process that is already running: changing the command or the
	// target afterwards could only make the object lie about it.
	if !apiequality.Semantic.DeepEqual(newSession.Spec, oldSession.Spec) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec"), immutableErrorMsg).WithOrigin("immutable"))
	}
	return allErrs
}

// ValidateTerminalSessionStatusUpdate validates an update through the status subresource.
func ValidateTerminalSessionStatusUpdate(newSession, oldSession *terminal.TerminalSession) field.ErrorList {
	statusPath := field.NewPath("status")
	newStatus, oldStatus := &newSession.Status, &oldSession.Status
	var allErrs field.ErrorList

	// The owner decides whose identity the process runs with and who may attach; letting
	// a status writer change it would turn status access into a privilege escalation.
	ownerPath := statusPath.Child("owner")
	if oldStatus.Owner != nil && !apiequality.Semantic.DeepEqual(newStatus.Owner, oldStatus.Owner) {
		allErrs = append(allErrs, field.Forbidden(ownerPath, immutableErrorMsg).WithOrigin("immutable"))
	} else if newStatus.Owner != nil && newStatus.Owner.Username == "" {
		allErrs = append(allErrs, field.Required(ownerPath.Child("username"), ""))
	}

	phasePath := statusPath.Child("phase")
	if !isSupportedPhase(newStatus.Phase) {
		allErrs = append(allErrs, field.NotSupported(phasePath, newStatus.Phase, supportedPhases))
	} else if isFinalPhase(oldStatus.Phase) && newStatus.Phase != oldStatus.Phase {
		// Status updates may be unconditional, so a replica acting on a stale view could
		// otherwise reopen a session that another one already closed.
		allErrs = append(allErrs, field.Forbidden(phasePath, "may not change once the session is "+string(oldStatus.Phase)))
	}

	if newStatus.ExitCode != nil && !isFinalPhase(newStatus.Phase) {
		allErrs = append(allErrs, field.Forbidden(statusPath.Child("exitCode"), "may only be set when phase is Closed or Failed"))
	}

	if newStatus.Reason != "" {
		reasonPath := statusPath.Child("reason")
		if len(newStatus.Reason) > maxReasonLength {
			allErrs = append(allErrs, field.TooLong(reasonPath, "", maxReasonLength))
		} else if !reasonRegexp.MatchString(newStatus.Reason) {
			allErrs = append(allErrs, field.Invalid(reasonPath, newStatus.Reason, "must be a CamelCase word of letters and digits, such as IdleTimeout"))
		}
	}
	if len(newStatus.Message) > maxMessageLength {
		allErrs = append(allErrs, field.TooLong(statusPath.Child("message"), "", maxMessageLength))
	}
	if newStatus.Viewers < 0 {
		allErrs = append(allErrs, field.Invalid(statusPath.Child("viewers"), newStatus.Viewers, "must be greater than or equal to zero"))
	}
	if newStatus.ObservedGeneration < 0 {
		allErrs = append(allErrs, field.Invalid(statusPath.Child("observedGeneration"), newStatus.ObservedGeneration, "must be greater than or equal to zero"))
	}
	allErrs = append(allErrs, metav1validation.ValidateConditions(newStatus.Conditions, statusPath.Child("conditions"))...)
	return allErrs
}

func isSupportedPhase(phase terminal.TerminalSessionPhase) bool {
	for _, p := range supportedPhases {
		if phase == p {
			return true
		}
	}
	return false
}

func isFinalPhase(phase terminal.TerminalSessionPhase) bool {
	return phase == terminal.TerminalSessionClosed || phase == terminal.TerminalSessionFailed
}
