# The reconcile steps of a node-image Packer build. Drop these provisioners
# into the build block of an existing template, before the image is
# captured. No download step is needed: bake fetches every package the cache
# lacks with the image's own package manager (download only, no scripts) and
# downloads every tarball or OCI artifact the manifest pins (components.yaml
# here has both beside packages), so the build VM must reach the image's
# repositories and those hosts. Packages a pipeline already put in
# /opt/<tool>/downloads are used as they are.
#
#   packer build -var reconcile_binary=dist/reconcile-linux-amd64 .
#
# bake.sh installs the binary as /usr/local/bin/reconcile and the manifest as
# /etc/reconcile/components.yaml, bakes, and verifies by running each binary.

variable "reconcile_binary" {
  type        = string
  description = "reconcile built for the image's architecture (CGO_ENABLED=0 go build ./cmd/reconcile)"
}

variable "reconcile_manifest" {
  type        = string
  default     = "manifests/components.yaml"
  description = "the components manifest the image carries"
}

variable "ca_file" {
  type        = string
  default     = ""
  description = "on the build VM: PEM certificates of a private mirror of the artifacts (empty: the system roots only)"
}

variable "docker_config" {
  type        = string
  default     = ""
  description = "on the build VM: the directory of a docker config.json with registry logins (empty: anonymous pulls)"
}

build {
  # Replace with the sources of the existing template.
  sources = ["source.azure-arm.node-image"]

  provisioner "file" {
    source      = var.reconcile_binary
    destination = "/tmp/reconcile"
  }

  provisioner "file" {
    source      = var.reconcile_manifest
    destination = "/tmp/components.yaml"
  }

  provisioner "shell" {
    environment_vars = [
      "RECONCILE=/tmp/reconcile",
      "MANIFEST=/tmp/components.yaml",
      "CA_FILE=${var.ca_file}",
      "DOCKER_CONFIG=${var.docker_config}",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    script          = "${path.root}/bake.sh"
  }
}
