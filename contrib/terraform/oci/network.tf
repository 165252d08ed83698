# A VCN with one public subnet; the security list is the VCN-level firewall
# (the VM's own iptables, set by the cloud recipe, allow the same).

resource "oci_core_vcn" "mx" {
  compartment_id = var.compartment_ocid
  cidr_blocks    = [var.vcn_cidr]
  display_name   = "${var.name}-vcn"
  # letters and digits only, at most 15
  dns_label = substr(replace(var.name, "/[^a-zA-Z0-9]/", ""), 0, 15)
}

resource "oci_core_internet_gateway" "mx" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.mx.id
  display_name   = "${var.name}-igw"
  enabled        = true
}

resource "oci_core_route_table" "mx" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.mx.id
  display_name   = "${var.name}-routes"
  route_rules {
    destination       = "0.0.0.0/0"
    destination_type  = "CIDR_BLOCK"
    network_entity_id = oci_core_internet_gateway.mx.id
  }
}

resource "oci_core_security_list" "mx" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.mx.id
  display_name   = "${var.name}-seclist"

  egress_security_rules {
    destination = "0.0.0.0/0"
    protocol    = "all"
  }

  # SMTP from anywhere
  ingress_security_rules {
    protocol = "6"
    source   = "0.0.0.0/0"
    tcp_options {
      min = 25
      max = 25
    }
  }

  # HTTP-01 for Let's Encrypt (multi-perspective: cannot be narrowed)
  ingress_security_rules {
    protocol = "6"
    source   = "0.0.0.0/0"
    tcp_options {
      min = 80
      max = 80
    }
  }

  # /metrics and /healthz from home only
  ingress_security_rules {
    protocol = "6"
    source   = var.home_cidr
    tcp_options {
      min = var.metrics_port
      max = var.metrics_port
    }
  }

  # node_exporter (the MX check's textfile) from home only
  ingress_security_rules {
    protocol = "6"
    source   = var.home_cidr
    tcp_options {
      min = 9100
      max = 9100
    }
  }

  # SSH from the management range only
  dynamic "ingress_security_rules" {
    for_each = var.mgmt_cidrs
    content {
      protocol = "6"
      source   = ingress_security_rules.value
      tcp_options {
        min = 22
        max = 22
      }
    }
  }

  # path MTU discovery
  ingress_security_rules {
    protocol = "1"
    source   = "0.0.0.0/0"
    icmp_options {
      type = 3
      code = 4
    }
  }
}

resource "oci_core_subnet" "mx" {
  compartment_id    = var.compartment_ocid
  vcn_id            = oci_core_vcn.mx.id
  cidr_block        = var.subnet_cidr
  display_name      = "${var.name}-subnet"
  dns_label         = "mx"
  route_table_id    = oci_core_route_table.mx.id
  security_list_ids = [oci_core_security_list.mx.id]
}
