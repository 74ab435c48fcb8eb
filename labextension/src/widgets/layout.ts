/**
 * Sections of a side panel that size to their content.
 *
 * A SidePanel's sections live in a Lumino AccordionPanel, which splits the height
 * between them whatever they hold: one model took half the panel and pushed Jobs below
 * the fold. Lumino's split layout honours each section's CSS max-height, so a section's
 * max-height is kept at its content's height: a short section takes what it needs and
 * gives the rest to the others; when they do not all fit, they share the height evenly
 * (none below what it needs if that fits in its share) and each scrolls.
 */
import { ISignal } from '@lumino/signaling';
import { AccordionPanel, Widget } from '@lumino/widgets';

/** The height a section needs: its first child (the rendered body) plus its own padding and border. */
function contentHeight(section: Widget): number {
  const body = section.node.firstElementChild as HTMLElement | null;
  if (!body || !section.isVisible) {
    return 0;
  }
  const style = getComputedStyle(section.node);
  const frame = ['padding-top', 'padding-bottom', 'border-top-width', 'border-bottom-width'].reduce(
    (sum, key) => sum + (parseFloat(style.getPropertyValue(key)) || 0),
    0
  );
  return Math.ceil(body.getBoundingClientRect().height + frame);
}

/**
 * Keep every section of `accordion` at most as tall as its content, re-measured whenever
 * a section's body changes size (a model expanded, a job added). Returns a function that
 * stops following.
 */
export function fitSectionsToContent(accordion: AccordionPanel): () => void {
  const needed = new Map<Widget, number>();
  const refit = () => {
    let changed = false;
    for (const section of accordion.widgets) {
      const height = contentHeight(section);
      if (height === 0) {
        continue; // collapsed or not rendered yet: Lumino gives it no height anyway
      }
      if (Math.abs((needed.get(section) ?? -1) - height) > 1) {
        needed.set(section, height);
        section.node.style.maxHeight = `${height}px`;
        changed = true;
      }
    }
    if (changed) {
      // Equal shares again, then Lumino caps each at its max-height and hands the
      // space a section does not need to the others (stretch 1 each). Only a fit
      // re-reads the max-heights; setRelativeSizes alone lays out with the old ones.
      accordion.setRelativeSizes(
        accordion.widgets.map(() => 1),
        false
      );
      accordion.fit();
    }
  };
  const resizes = new ResizeObserver(() => refit());
  const observeBodies = () => {
    for (const section of accordion.widgets) {
      AccordionPanel.setStretch(section, 1);
      const body = section.node.firstElementChild;
      if (body) {
        resizes.observe(body);
      }
    }
    refit();
  };
  // A view renders its body after being attached: watch for it to appear.
  const bodies = new MutationObserver(observeBodies);
  accordion.widgets.forEach(section => bodies.observe(section.node, { childList: true }));
  observeBodies();
  return () => {
    resizes.disconnect();
    bodies.disconnect();
  };
}

/**
 * Fold `section` of `accordion` while it has nothing to show, and unfold it when it gets
 * something: a section for the exceptional (a promotion waiting for approval) costs the
 * others only its title the rest of the time. It acts when emptiness changes only, so a
 * person's own fold or unfold stands until then.
 */
export function foldWhenEmpty(
  accordion: AccordionPanel,
  section: Widget,
  isEmpty: () => boolean,
  changed: ISignal<unknown, void>
): void {
  let folded: boolean | null = null;
  const apply = () => {
    const empty = isEmpty();
    if (empty === folded) {
      return;
    }
    folded = empty;
    const index = accordion.widgets.indexOf(section);
    if (empty) {
      accordion.collapse(index);
    } else {
      accordion.expand(index);
    }
  };
  changed.connect(apply);
  apply();
}
