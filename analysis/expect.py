"""Named expectations: the thresholds every verdict uses, in one place (like pjsua's inc_const).

A call works when both sides reach CONFIRMED, the BYE is answered, each direction receives at
least RTP_RATIO of what the other side sent while its own media was up (lowered by a configured
random loss), each side
sent at least MIN_TX_FRACTION of duration x PACKETS_PER_S, and each recording holds the far tone
at HEARD_DB or louder.
"""
from __future__ import annotations

PACKETS_PER_S = 50  # 20 ms ptime
RTP_RATIO = 0.95  # received / sent, per direction
MIN_TX_FRACTION = 0.9  # of duration x PACKETS_PER_S, per sender
HEARD_DB = -10.0  # a tone counts as heard at this level (dB of the recording's power) or above
VIDEO_RX_RATIO = 0.9  # video packets received / sent, per direction
CONFERENCE_MIN_FRACTION = 0.8  # of duration x PACKETS_PER_S, each way per participant
AUDIO_PAYLOAD_TYPES = (0, 8)  # PCMU, PCMA: what the phones negotiate
VERDICTS = ("works", "fails")
# An attack scenario's outcome: the attacker obtained something, or every request was refused
ATTACK_VERDICTS = ("obtained", "refused")
FLOOD_MIN_MOS = 4.3  # the legitimate call during a flood: G.107 MOS at least this, 0 % loss
ERROR = "error"  # the verdict of a scenario whose analysis failed
