"""The picture cmp shows under a wrong gradient: where it differs from PyTorch's, entry by
entry, beside PyTorch's own gradient on the same colour scale. Rows and columns are the
tensor's; a tensor of more than two dimensions keeps its rows and has the rest flattened
into columns, as the hints count its rows. Made only when a front end asks for the PNG (in a Jupyter kernel);
anywhere else it is one line of text."""
import io
import textwrap

import torch


def as_rows(x):
    """x as a 2-D float tensor: a scalar is 1x1, a vector one row, more dimensions are
    flattened after the first."""
    x = x.detach().double()
    if x.dim() < 2:
        return x.reshape(1, -1)
    return x.flatten(1)


def shape_words(x):
    """x's shape, and the rows and columns it is drawn as when that is not its shape."""
    shown = tuple(as_rows(x).shape)
    return str(tuple(x.shape)) + (f' shown as {shown[0]}x{shown[1]}' if x.dim() != 2 else '')


class Picture:
    """The picture of one wrong gradient `name`: yours (dt) against PyTorch's (ref).
    Same shape: yours - PyTorch's beside PyTorch's. Other shapes: yours beside PyTorch's,
    each with its shape. `caption` is the hint's pattern in a few words."""

    def __init__(self, name, dt, ref, caption):
        if dt.shape == ref.shape:
            self.title = f'{name} {shape_words(ref)}: {caption}'
            diff = as_rows(dt) - as_rows(ref)
            largest = 'largest' if diff.isfinite().all() else 'largest finite'
            largest += f' {diff.nan_to_num(0, 0, 0).abs().max().item():.1e}'
            self.panels = [(f"yours - PyTorch's ({largest})", diff),
                           ("PyTorch's", as_rows(ref))]
        else:
            self.title = f'{name}: shape {tuple(dt.shape)}, should be {tuple(ref.shape)}: {caption}'
            self.panels = [(f'yours {shape_words(dt)}', as_rows(dt)), (f"PyTorch's {shape_words(ref)}", as_rows(ref))]

    def __repr__(self):
        return f'<picture of {self.title}>'

    def figure(self):
        import matplotlib
        from matplotlib.colors import SymLogNorm
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        finite = [v[torch.isfinite(v)].abs() for _, v in self.panels]
        scale = max([v.max().item() for v in finite if v.numel()] + [1e-30])
        # one colour scale for both panels: logarithmic over the two decades below the largest
        # entry and linear nearer zero, so that a difference 30 times smaller than the gradient
        # (or 30 times larger) still shows its pattern
        norm = SymLogNorm(linthresh=scale / 100, vmin=-scale, vmax=scale, base=10)
        colours = matplotlib.colormaps['RdBu_r'].with_extremes(bad='black')
        tall = max(v.shape[0] for _, v in self.panels)
        fig = Figure(figsize=(8, 1.8 if tall <= 2 else 3.0), dpi=100, layout='constrained')
        axes = fig.subplots(1, 2)
        for ax, (title, values) in zip(axes, self.panels):
            shown = values.masked_fill(~torch.isfinite(values), float('nan')).numpy()
            image = ax.imshow(shown, cmap=colours, norm=norm, aspect='auto', interpolation='nearest')
            ax.set_title(title, fontsize=9)
            ax.set_ylabel('row', fontsize=8)
            ax.set_xlabel('column', fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ticks = [-scale, -scale / 10, -scale / 100, 0, scale / 100, scale / 10, scale]
        bar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.02, ticks=ticks)
        bar.ax.set_yticklabels([f'{t:.1e}' if t else '0' for t in ticks])
        bar.ax.tick_params(labelsize=7)
        bar.ax.minorticks_off()
        fig.suptitle('\n'.join(textwrap.wrap(self.title, 90)), fontsize=10)
        return fig

    def _repr_png_(self):
        out = io.BytesIO()
        self.figure().savefig(out, format='png')
        return out.getvalue()


if __name__ == '__main__':
    # python -m helpers.picture docs/img/cmp_picture.png: the README's picture, notebook 1's
    # dC written as dC[Xb] += demb, which keeps one gradient of each repeated character
    import sys

    from helpers import forward_atoms, mistake, notebook1_batch
    params, Xb, Yb, _ = notebook1_batch()
    d = forward_atoms(params, Xb, Yb)
    d['loss'].backward()
    C = params[0]
    dC = torch.zeros(C.shape)  # the slip: an indexed += keeps one of a repeated row's gradients
    dC[Xb] += d['emb'].grad
    caption, hint = mistake(dC, C.grad, 'dC')
    with open(sys.argv[1], 'wb') as f:
        f.write(Picture('dC', dC, C.grad, caption)._repr_png_())
    print(hint)
