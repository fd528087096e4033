"""Admission's fair-share arithmetic per tenant (scores.admission.TenantShare): pure."""

from scores.admission import TenantShare


def test_a_tenant_over_half_again_an_equal_split_is_over_its_fair_share():
    assert TenantShare(mine=951, total=1900, tenants=3).over_fair_share()  # 951 > 1.5 x 633.3
    assert not TenantShare(mine=950, total=1900, tenants=3).over_fair_share()


def test_a_tenant_alone_is_never_over_its_fair_share_but_is_at_its_split():
    alone = TenantShare(mine=5000, total=5000, tenants=1)
    assert not alone.over_fair_share() and alone.at_or_over_split()


def test_a_newcomer_is_below_any_split():
    newcomer = TenantShare(mine=0, total=1000, tenants=2)
    assert not newcomer.at_or_over_split() and not newcomer.over_fair_share()
