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

// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/meshery/terminal-apiserver/pkg/apis/terminal
// +k8s:defaulter-gen=TypeMeta
// +k8s:openapi-model-package=com.github.meshery.terminal-apiserver.pkg.apis.terminal.v1alpha1
// +groupName=terminal.meshery.io

// Package v1alpha1 is the v1alpha1 version of the terminal.meshery.io API group:
// TerminalSession, an interactive shell in a container that Kubernetes RBAC and
// audit cover like any other object.
package v1alpha1
