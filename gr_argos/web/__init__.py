# SPDX-License-Identifier: GPL-3.0-or-later
"""The browser viewer and the JavaScript client, served by gr_argos.server at / on the stream port."""
