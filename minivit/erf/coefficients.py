"""The coefficient tables of :mod:`minivit.erf.fdlibm`'s error function.

Double precision: fdlibm / FreeBSD msun ``s_erf.c`` (= musl ``src/math/erf.c``); single
precision: FreeBSD msun ``s_erff.c`` (S. Kargl's 2014 refit). Pure Python floats, no arrays.
"""

from __future__ import annotations

import struct

# --------------------------------------------------------------------------------
# Coefficients.  Each is written as in the C source, next to its IEEE bit pattern
# (also from the source); ``tests/erf/test_erf.py`` checks that the two agree, so a
# mistyped digit cannot slip in.  Tuples are in ascending powers.
# --------------------------------------------------------------------------------

BITS64: list[tuple[str, float, int]] = []  # (name, value, IEEE-754 binary64 bits)
BITS32: list[tuple[str, float, int]] = []  # (name, value, IEEE-754 binary32 bits)


def _d(name: str, value: float, bits: int) -> float:
    BITS64.append((name, value, bits))
    return value


def _f(name: str, value: float, bits: int) -> float:
    BITS32.append((name, value, bits))
    return value


def from_bits64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def from_bits32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


# ---- double precision: fdlibm / FreeBSD msun s_erf.c (= musl src/math/erf.c) ----
ERX64 = _d("erx", 8.45062911510467529297e-01, 0x3FEB0AC160000000)
# erf on [0, 0.84375]: (erf(x) - x)/x = PP(x^2)/QQ(x^2)
PP64 = (
    _d("pp0", 1.28379167095512558561e-01, 0x3FC06EBA8214DB68),
    _d("pp1", -3.25042107247001499370e-01, 0xBFD4CD7D691CB913),
    _d("pp2", -2.84817495755985104766e-02, 0xBF9D2A51DBD7194F),
    _d("pp3", -5.77027029648944159157e-03, 0xBF77A291236668E4),
    _d("pp4", -2.37630166566501626084e-05, 0xBEF8EAD6120016AC),
)
QQ64 = (
    1.0,
    _d("qq1", 3.97917223959155352819e-01, 0x3FD97779CDDADC09),
    _d("qq2", 6.50222499887672944485e-02, 0x3FB0A54C5536CEBA),
    _d("qq3", 5.08130628187576562776e-03, 0x3F74D022C4D36B0F),
    _d("qq4", 1.32494738004321644526e-04, 0x3F215DC9221C1A10),
    _d("qq5", -3.96022827877536812320e-06, 0xBED09C4342A26120),
)
# erf on [0.84375, 1.25]: erf(1+s) - erx = PA(s)/QA(s)
PA64 = (
    _d("pa0", -2.36211856075265944077e-03, 0xBF6359B8BEF77538),
    _d("pa1", 4.14856118683748331666e-01, 0x3FDA8D00AD92B34D),
    _d("pa2", -3.72207876035701323847e-01, 0xBFD7D240FBB8C3F1),
    _d("pa3", 3.18346619901161753674e-01, 0x3FD45FCA805120E4),
    _d("pa4", -1.10894694282396677476e-01, 0xBFBC63983D3E28EC),
    _d("pa5", 3.54783043256182359371e-02, 0x3FA22A36599795EB),
    _d("pa6", -2.16637559486879084300e-03, 0xBF61BF380A96073F),
)
QA64 = (
    1.0,
    _d("qa1", 1.06420880400844228286e-01, 0x3FBB3E6618EEE323),
    _d("qa2", 5.40397917702171048937e-01, 0x3FE14AF092EB6F33),
    _d("qa3", 7.18286544141962662868e-02, 0x3FB2635CD99FE9A7),
    _d("qa4", 1.26171219808761642112e-01, 0x3FC02660E763351F),
    _d("qa5", 1.36370839120290507362e-02, 0x3F8BEDC26B51DD1C),
    _d("qa6", 1.19844998467991074170e-02, 0x3F888B545735151D),
)
# erfc on [1.25, 1/0.35]: log(x*erfc(x)) + x^2 + 0.5625 = RA(1/x^2)/SA(1/x^2)
RA64 = (
    _d("ra0", -9.86494403484714822705e-03, 0xBF843412600D6435),
    _d("ra1", -6.93858572707181764372e-01, 0xBFE63416E4BA7360),
    _d("ra2", -1.05586262253232909814e01, 0xC0251E0441B0E726),
    _d("ra3", -6.23753324503260060396e01, 0xC04F300AE4CBA38D),
    _d("ra4", -1.62396669462573470355e02, 0xC0644CB184282266),
    _d("ra5", -1.84605092906711035994e02, 0xC067135CEBCCABB2),
    _d("ra6", -8.12874355063065934246e01, 0xC054526557E4D2F2),
    _d("ra7", -9.81432934416914548592e00, 0xC023A0EFC69AC25C),
)
SA64 = (
    1.0,
    _d("sa1", 1.96512716674392571292e01, 0x4033A6B9BD707687),
    _d("sa2", 1.37657754143519042600e02, 0x4061350C526AE721),
    _d("sa3", 4.34565877475229228821e02, 0x407B290DD58A1A71),
    _d("sa4", 6.45387271733267880336e02, 0x40842B1921EC2868),
    _d("sa5", 4.29008140027567833386e02, 0x407AD02157700314),
    _d("sa6", 1.08635005541779435134e02, 0x405B28A3EE48AE2C),
    _d("sa7", 6.57024977031928170135e00, 0x401A47EF8E484A93),
    _d("sa8", -6.04244152148580987438e-02, 0xBFAEEFF2EE749A62),
)
# erfc on [1/0.35, 28] (used up to 6 for erf)
RB64 = (
    _d("rb0", -9.86494292470009928597e-03, 0xBF84341239E86F4A),
    _d("rb1", -7.99283237680523006574e-01, 0xBFE993BA70C285DE),
    _d("rb2", -1.77579549177547519889e01, 0xC031C209555F995A),
    _d("rb3", -1.60636384855821916062e02, 0xC064145D43C5ED98),
    _d("rb4", -6.37566443368389627722e02, 0xC083EC881375F228),
    _d("rb5", -1.02509513161107724954e03, 0xC09004616A2E5992),
    _d("rb6", -4.83519191608651397019e02, 0xC07E384E9BDC383F),
)
SB64 = (
    1.0,
    _d("sb1", 3.03380607434824582924e01, 0x403E568B261D5190),
    _d("sb2", 3.25792512996573918826e02, 0x40745CAE221B9F0A),
    _d("sb3", 1.53672958608443695994e03, 0x409802EB189D5118),
    _d("sb4", 3.19985821950859553908e03, 0x40A8FFB7688C246A),
    _d("sb5", 2.55305040643316442583e03, 0x40A3F219CEDF3BE6),
    _d("sb6", 4.74528541206955367215e02, 0x407DA874E79FE763),
    _d("sb7", -2.24409524465858183362e01, 0xC03670E242712D62),
)

# ---- single precision: FreeBSD msun s_erff.c (S. Kargl's 2014 refit) ----
ERX32 = _f("erx", 8.42697144e-01, 0x3F57BB00)
# [0, 0.84375]: |(erf(x) - x)/x - pp/qq| < 2**-31
PP32 = (
    _f("pp0", 1.28379166e-01, 0x3E0375D4),
    _f("pp1", -3.36030394e-01, 0xBEAC0C2D),
    _f("pp2", -1.86261395e-03, 0xBAF422F4),
)
QQ32 = (
    1.0,
    _f("qq1", 3.12324315e-01, 0x3E9FE8F9),
    _f("qq2", 2.16070414e-02, 0x3CB10140),
    _f("qq3", -1.98859372e-03, 0xBB025311),
)
# [0.84375, 1.25]: |(erf(x) - erx) - pa/qa| < 2**-31
PA32 = (
    _f("pa0", 3.65041046e-06, 0x3674F993),
    _f("pa1", 4.15109307e-01, 0x3ED48935),
    _f("pa2", -2.09395722e-01, 0xBE566BD5),
    _f("pa3", 8.67677554e-02, 0x3DB1B34B),
)
QA32 = (
    1.0,
    _f("qa1", 4.95560974e-01, 0x3EFDBA2B),
    _f("qa2", 3.71248513e-01, 0x3EBE1449),
    _f("qa3", 3.92478965e-02, 0x3D20C267),
)
# [1.25, 1/0.35]: |log(x*erfc(x)) + x**2 + 0.5625 - ra/sa| < 2**-28
RA32 = (
    _f("ra0", -9.88156721e-03, 0xBC21E64C),
    _f("ra1", -5.43658376e-01, 0xBF0B2D32),
    _f("ra2", -1.66828310e00, 0xBFD58A4D),
    _f("ra3", -6.91554189e-01, 0xBF3109B2),
)
SA32 = (
    1.0,
    _f("sa1", 4.48581553e00, 0x408F8BCD),
    _f("sa2", 4.10799170e00, 0x408374AB),
    _f("sa3", 5.53855181e-01, 0x3F0DC974),
)
# [1/0.35, 11]: |log(x*erfc(x)) + x**2 + 0.5625 - rb/sb| < 2**-30
RB32 = (
    _f("rb0", -9.86496918e-03, 0xBC21A0AE),
    _f("rb1", -5.48049808e-01, 0xBF0C4CFE),
    _f("rb2", -1.84115684e00, 0xBFEBAB07),
)
SB32 = (
    1.0,
    _f("sb1", 4.87132740e00, 0x409BE1EA),
    _f("sb2", 3.04982710e00, 0x4043305E),
    _f("sb3", -7.61900663e-01, 0xBF430BEC),
)

# float32 erf through tanh (minivit.erf.fdlibm.erf_float32):
#   erf(x) ~= tanh(x R(x^2)),  R(z) = sum_i ERF32_TANH[i] z^i,  |x| <= 4  (erf(4) rounds to 1),
# R of degree 6, fitted to atanh(erf(x)) / x on (0, 3.95] by iteratively reweighted linear least
# squares (Lawson), each error counted in float32 ulps of erf(x), R(0) pinned to 2/sqrt(pi)
# rounded to float32 (so erf(x) = 2x/sqrt(pi) near 0): ``python3 benchmarks/fit_erf_float32.py``
# (2026-12-06) prints these and the error: within 1.47 float32 ulp in exact arithmetic, 3.32 ulp
# (absolute error 1.8e-7) evaluated in float32 with NumPy's tanh.
ERF32_TANH = (1.128379225730896, 0.10276930034160614, -0.00019185294513590634,
              -0.0006200526258908212, 8.780084317550063e-05, -5.700988822354702e-06,
              1.4389618741006416e-07)
