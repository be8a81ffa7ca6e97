# The reconcile steps of a node-image Packer build. Drop these provisioners
# into the build block of an existing template, after the step that downloads
# the packages into /opt/<tool>/downloads, before the image is captured.
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
    ]
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    script          = "${path.root}/bake.sh"
  }
}
