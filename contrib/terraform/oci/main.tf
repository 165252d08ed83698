# The VM: VM.Standard.E2.1.Micro on the newest Canonical Ubuntu image,
# user-data = contrib/cloud/oci-always-free.yaml with its variables
# (/etc/holdfast-cloud/env) taken from this stack, and a reserved public
# IP that survives rebuilding the VM (the MX's A record points at it).

data "oci_identity_availability_domains" "all" {
  compartment_id = var.compartment_ocid
}

data "oci_core_images" "ubuntu" {
  compartment_id           = var.compartment_ocid
  operating_system         = var.image_os
  operating_system_version = var.image_os_version
  shape                    = var.shape
  sort_by                  = "TIMECREATED"
  sort_order               = "DESC"
}

locals {
  recipe = yamldecode(file("${path.module}/../../cloud/oci-always-free.yaml"))
  cloud_env = join("\n", [
    "# holdfast cloud recipe variables (written by contrib/terraform/oci)",
    "HOLDFAST_REPO='${var.holdfast_repo}'",
    "HOLDFAST_REF='${var.holdfast_ref}'",
    "MX_NAME='${var.mx_name}'",
    "DOMAINS='${var.domains}'",
    "PRIMARY_HOST='${var.primary_host}'",
    "PRIMARY_PORT='${var.primary_port}'",
    "HOME_ADDR='${var.home_cidr}'",
    "MGMT_CIDR='${join(" ", var.mgmt_cidrs)}'",
    "METRICS_PORT='${var.metrics_port}'",
    "ACME_EMAIL='${var.acme_email}'",
    "DNSBL='${var.dnsbl}'",
    "MX_EXPECT='${var.mx_expect}'",
    "",
  ])
  # The recipe with its env entry replaced by this stack's values.
  user_data = "#cloud-config\n${yamlencode(merge(local.recipe, {
    write_files = [
      for f in local.recipe.write_files :
      f.path == "/etc/holdfast-cloud/env" ? merge(f, { content = local.cloud_env }) : f
    ]
  }))}"
}

resource "oci_core_instance" "mx" {
  compartment_id      = var.compartment_ocid
  availability_domain = data.oci_identity_availability_domains.all.availability_domains[var.availability_domain_index].name
  display_name        = var.name
  shape               = var.shape

  source_details {
    source_type = "image"
    source_id   = data.oci_core_images.ubuntu.images[0].id
  }

  create_vnic_details {
    subnet_id        = oci_core_subnet.mx.id
    assign_public_ip = false
    hostname_label   = var.name
  }

  metadata = {
    ssh_authorized_keys = var.ssh_authorized_keys
    user_data           = base64encode(local.user_data)
  }
}

data "oci_core_vnic_attachments" "mx" {
  compartment_id = var.compartment_ocid
  instance_id    = oci_core_instance.mx.id
}

data "oci_core_private_ips" "mx" {
  vnic_id = data.oci_core_vnic_attachments.mx.vnic_attachments[0].vnic_id
}

resource "oci_core_public_ip" "mx" {
  compartment_id = var.compartment_ocid
  lifetime       = "RESERVED"
  display_name   = "${var.name}-ip"
  private_ip_id  = data.oci_core_private_ips.mx.private_ips[0].id
}
